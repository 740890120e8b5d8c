package rcbroker

// WithPollWaits returns cfg with f called each time a poll starts to wait
// for a command.
func WithPollWaits(cfg Config, f func(hrn string)) Config {
	cfg.pollWaits = f
	return cfg
}
