// Package proto is the one definition of the Resource Controller protocol:
// the messages that orbit-rc (package rc, on the node) and the appliance's
// broker (package am/rcbroker) exchange, the operator API's command and
// status types, and the command signature. Both sides import it; neither
// defines a wire type of its own.
//
// The RC only ever connects out, over HTTP, to the appliance it found at
// boot; it listens on no port. Its calls, all under /api/v1:
//
//	POST /rc/enroll                EnrollRequest -> 200 EnrollResponse
//	                               (404: no inventory node has any of these MACs)
//	GET  /rc/poll?wait=25s&running=3,4
//	                               long poll, Bearer: 200 Envelope (one command)
//	                               or 204 (none in time); 401 ErrUnknownEnrollment:
//	                               enroll again
//	POST /rc/commands/{id}/report  Report, Bearer -> 204
//	                               (409: the command is over; 404: not this RC's)
//	GET  /disk-images/{name}       the stored image (gzip, zstd or chunked), HeaderSHA256 set
//	GET  /disk-images/{name}/manifest
//	                               a chunked image's manifest, as stored (409 if it
//	                               is a single stream)
//	PUT  /disk-images/{name}       an upload; HeaderSHA256 as a header or a trailer
//
// The operator's calls (nbctl, an Experiment Controller):
//
//	GET  /rc                       []RCStatus of every enrolled node
//	GET  /nodes/{hrn}/rc           RCStatus
//	POST /nodes/{hrn}/commands     CommandRequest -> 202 CommandStatus
//	GET  /nodes/{hrn}/commands     []CommandStatus, newest first
//	GET  /commands/{id}            CommandStatus
//	GET  /disk-images              []DiskImage
//
// Security: at enrollment the appliance issues a random per-enrollment
// secret. The RC sends it as "Authorization: Bearer <secret>" on every poll
// and report, and every command the appliance hands out carries
// HMAC-SHA256(secret, MACDomain || payload) over its payload bytes exactly
// as sent (Envelope). The RC runs a command only if that MAC is valid and
// the payload names its own enrollment and node; anything else it reports
// as refused and never runs.
package proto

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// DiskImagePath is the URL path of a stored disk image, for GET (the RC
// loads it, nbctl disk get) and PUT (the RC saves it, nbctl disk put).
func DiskImagePath(name string) string { return "/api/v1/disk-images/" + url.PathEscape(name) }

// DefaultPort is the appliance's HTTP port (OMF's AM port), used when the
// RC knows only the appliance's address (DHCP next-server).
const DefaultPort = 5054

// Command types: what the appliance asks an RC to do. The names are OMF's.
const (
	Execute   = "EXECUTE"    // run a command, stream its output, report its exit code
	Enroll    = "ENROLL"     // answer ENROLLED if the RAM image is Image, else WRONG_IMAGE
	LoadImage = "LOAD_IMAGE" // stream disk image Image from the appliance onto Disk
	SaveImage = "SAVE_IMAGE" // stream Disk to the appliance as disk image Image (chunked)
	Reboot    = "REBOOT"     // ask PID 1 to reboot the node
	Poweroff  = "POWEROFF"   // ask PID 1 to power the node off
)

// Types lists every command type.
var Types = []string{Execute, Enroll, LoadImage, SaveImage, Reboot, Poweroff}

// Replies, OMF's, in Report.Reply and CommandStatus.Reply.
const (
	ReplyOK         = "OK"
	ReplyEnrolled   = "ENROLLED"
	ReplyWrongImage = "WRONG_IMAGE"
	ReplyError      = "ERROR"
)

// Command states. A command is queued until its RC takes it in a poll,
// running until the RC reports its end, then done (it did what was asked;
// an EXECUTE whose program exited non-zero is done, with that exit code),
// failed (it could not: bad disk, checksum mismatch, lost) or refused (the
// RC would not run it: bad signature, not addressed to it).
const (
	StateQueued  = "queued"
	StateRunning = "running"
	StateDone    = "done"
	StateFailed  = "failed"
	StateRefused = "refused"
)

// Terminal reports whether a command in state s is over.
func Terminal(s string) bool {
	return s == StateDone || s == StateFailed || s == StateRefused
}

// Headers.
const (
	// HeaderSHA256 carries the lower-case hex SHA-256 of a disk image's bytes
	// as stored (compressed), or of a chunked image's manifest (its digest,
	// which commits to every chunk): on GET from the appliance, and on PUT from the
	// uploader, as a header or, when the uploader learns it only at the end
	// (SAVE_IMAGE streams), as an HTTP trailer.
	HeaderSHA256 = "X-Content-Sha256"
	// HeaderFormat says how a stored image is compressed: FormatZstd,
	// FormatGzip or FormatChunked.
	HeaderFormat = "X-Image-Format"
)

// Disk image formats, told apart by their magic bytes: one zstd or gzip
// stream of the whole disk, or a chunked image (internal/chunkimg: every
// chunk verified on its own, zero chunks not stored).
const (
	FormatZstd    = "zstd"
	FormatGzip    = "gzip"
	FormatChunked = "chunked"
)

// ChunkedMagic starts a chunked image.
const ChunkedMagic = "NBCHUNK1"

// FormatOf names the format of data that starts with head ("" if it is
// none of them).
func FormatOf(head []byte) string {
	switch {
	case len(head) >= 4 && head[0] == 0x28 && head[1] == 0xb5 && head[2] == 0x2f && head[3] == 0xfd:
		return FormatZstd
	case len(head) >= 2 && head[0] == 0x1f && head[1] == 0x8b:
		return FormatGzip
	case len(head) >= len(ChunkedMagic) && string(head[:len(ChunkedMagic)]) == ChunkedMagic:
		return FormatChunked
	}
	return ""
}

// ErrUnknownEnrollment is the error text of a 401 answer to a poll or a
// report whose bearer secret the appliance does not know (it lost the
// enrollment, or the node has enrolled again since): the RC enrolls again.
const ErrUnknownEnrollment = "unknown enrollment"

// Disk is a block device of the node, from /sys/block.
type Disk struct {
	Name      string `json:"name"`            // sda
	Path      string `json:"path"`            // /dev/sda
	Size      int64  `json:"size"`            // bytes
	Model     string `json:"model,omitempty"` // /sys/block/X/device/model
	Removable bool   `json:"removable,omitempty"`
}

// EnrollRequest is what an RC says about itself when it enrolls. The
// appliance finds its node by the first of MACs that the inventory knows.
type EnrollRequest struct {
	MACs      []string `json:"macs"`              // control interface first
	Hostname  string   `json:"hostname"`          // as set by orbit-init
	Image     string   `json:"image"`             // the RAM image's name (/.orbit_image)
	Addresses []string `json:"addresses"`         // CIDR, e.g. 10.18.1.2/16
	Kernel    string   `json:"kernel"`            // uname -r
	BootID    string   `json:"boot_id"`           // a new one means the node rebooted
	Disks     []Disk   `json:"disks"`             // from /sys/block
	Version   string   `json:"version,omitempty"` // the RC's version
	// Firmware is FirmwareBIOS or FirmwareUEFI, as the node booted; ""
	// (an RC from before it was reported) is unknown.
	Firmware string `json:"firmware,omitempty"`
	// SecureBoot is the firmware's SecureBoot variable; nil is unknown
	// (an older RC, or efivarfs could not be read). Always false on BIOS.
	SecureBoot *bool `json:"secure_boot,omitempty"`
}

// Firmware kinds in EnrollRequest.Firmware and RCStatus.Firmware.
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
)

// EnrollResponse is the appliance's answer to an enrollment.
type EnrollResponse struct {
	HRN        string `json:"hrn"`
	Enrollment int64  `json:"enrollment"` // the enrollment's id: commands name it
	Secret     string `json:"secret"`     // hex; the bearer token and the commands' HMAC key
	PollWait   string `json:"poll_wait"`  // Go duration: the longest wait a poll may ask for
}

// Command is the payload of a command as the appliance signs and sends it.
type Command struct {
	ID         int64    `json:"id"`
	Enrollment int64    `json:"enrollment"` // must be the RC's own enrollment
	HRN        string   `json:"hrn"`        // must be the RC's own node
	Type       string   `json:"type"`
	Command    string   `json:"command,omitempty"` // EXECUTE: run by /bin/sh -c
	Args       []string `json:"args,omitempty"`    // EXECUTE: run directly, when Command is ""
	Timeout    string   `json:"timeout,omitempty"` // EXECUTE: Go duration, then killed; "" none
	Image      string   `json:"image,omitempty"`   // ENROLL, LOAD_IMAGE, SAVE_IMAGE
	Disk       string   `json:"disk,omitempty"`    // LOAD_IMAGE, SAVE_IMAGE: a block device
	SHA256     string   `json:"sha256,omitempty"`  // LOAD_IMAGE: the image's checksum when queued
	Size       int64    `json:"size,omitempty"`    // LOAD_IMAGE: the image's size when queued
	// Multicast: LOAD_IMAGE of a chunked image that the appliance sends to
	// several nodes at once; nil: fetch it over HTTP.
	Multicast *Multicast `json:"multicast,omitempty"`
	IssuedAt  time.Time  `json:"issued_at"` // when the appliance handed it out
}

// Multicast is a LOAD_IMAGE's multicast session (rc/proto/mcast is its
// wire format): the node takes the image's chunks from Group, reports what
// it still misses to Sender, and drops every datagram that Key does not
// authenticate. The key reaches the node only inside the signed command.
type Multicast struct {
	Group   string `json:"group"`   // "239.255.18.3:40003"
	Sender  string `json:"sender"`  // "10.18.0.1:40003": the reports go there
	Session uint64 `json:"session"` // in every datagram of the session
	Key     string `json:"key"`     // hex: the datagrams' HMAC-SHA256 key
	// Fallback (a Go duration): with no valid datagram for that long, the
	// node fetches what it misses over HTTP.
	Fallback string `json:"fallback"`
}

// Envelope is a signed command as sent to the RC: the payload (a JSON
// Command) as exact bytes, and its MAC.
type Envelope struct {
	Payload []byte `json:"payload"` // base64 in JSON, so that no re-encoding can change a byte
	MAC     string `json:"mac"`     // hex HMAC-SHA256(secret, MACDomain || Payload)
}

// MACDomain separates command MACs from any other use of the secret.
const MACDomain = "orbit-rc/v1 command\n"

// Sign marshals c and signs it with the enrollment's secret (hex).
func Sign(c Command, secret string) (Envelope, error) {
	key, err := hex.DecodeString(secret)
	if err != nil || len(key) == 0 {
		return Envelope{}, errors.New("proto: sign: the secret is not hex")
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return Envelope{}, fmt.Errorf("proto: sign: %w", err)
	}
	return Envelope{Payload: payload, MAC: hex.EncodeToString(mac(key, payload))}, nil
}

func mac(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(MACDomain))
	m.Write(payload)
	return m.Sum(nil)
}

// ErrBadMAC is returned by Open for a missing or wrong MAC.
var ErrBadMAC = errors.New("bad command MAC")

// Open checks e's MAC with the secret (hex) and decodes its command. On
// ErrBadMAC it still returns the command's ID when the payload has one, so
// that the refusal can be reported; nothing else of it may be trusted.
func Open(e Envelope, secret string) (Command, error) {
	var c Command
	key, err := hex.DecodeString(secret)
	if err != nil || len(key) == 0 {
		return c, errors.New("proto: open: the secret is not hex")
	}
	got, err := hex.DecodeString(e.MAC)
	if err != nil || !hmac.Equal(got, mac(key, e.Payload)) {
		var id struct {
			ID int64 `json:"id"`
		}
		_ = json.Unmarshal(e.Payload, &id)
		return Command{ID: id.ID}, ErrBadMAC
	}
	if err := json.Unmarshal(e.Payload, &c); err != nil {
		return Command{}, fmt.Errorf("proto: command payload: %w", err)
	}
	return c, nil
}

// Progress counts the bytes of a transfer: LOAD_IMAGE of a single-stream
// image counts the image's (compressed) bytes read from the appliance
// against its size; LOAD_IMAGE of a chunked image counts the disk's bytes
// settled (found already right, or written) against the disk's size;
// SAVE_IMAGE counts the disk's bytes read against the disk's size.
type Progress struct {
	Done    int64 `json:"done"`
	Total   int64 `json:"total"`             // 0 if unknown
	Written int64 `json:"written,omitempty"` // LOAD_IMAGE: bytes written to the disk; SAVE_IMAGE: bytes sent
	// A chunked LOAD_IMAGE: bytes of the disk that already held their
	// chunk (not written), and bytes of frames received (HTTP or multicast).
	Skipped int64 `json:"skipped,omitempty"`
	Fetched int64 `json:"fetched,omitempty"`
}

// Report is what an RC tells the appliance about a command: the first
// (state running) acknowledges it, more carry output and progress, and the
// last has a terminal state. Seq numbers the reports of a command from 1; a
// report whose Seq the appliance has seen is a retry and is ignored, so
// that output is never appended twice.
type Report struct {
	Seq      int64     `json:"seq"`
	State    string    `json:"state"`               // running, done, failed, refused
	Reply    string    `json:"reply,omitempty"`     // ENROLLED, WRONG_IMAGE, OK, ERROR
	Stdout   []byte    `json:"stdout,omitempty"`    // output since the last report
	Stderr   []byte    `json:"stderr,omitempty"`    // output since the last report
	ExitCode *int      `json:"exit_code,omitempty"` // EXECUTE, once its program ended
	Error    string    `json:"error,omitempty"`     // why it failed or was refused
	Progress *Progress `json:"progress,omitempty"`  // LOAD_IMAGE, SAVE_IMAGE
	SHA256   string    `json:"sha256,omitempty"`    // LOAD_IMAGE, SAVE_IMAGE: the image's verified checksum
}

// CommandRequest is the body of POST /api/v1/nodes/{hrn}/commands. Which
// fields count depends on Type (see Command); Disk defaults to the node's
// inventory disk.
type CommandRequest struct {
	Type    string   `json:"type"`
	Command string   `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Timeout string   `json:"timeout,omitempty"`
	Image   string   `json:"image,omitempty"`
	Disk    string   `json:"disk,omitempty"`
	// Multicast (LOAD_IMAGE): the caller loads Image onto several nodes;
	// the appliance sends a chunked image to them in one multicast session.
	Multicast bool `json:"multicast,omitempty"`
}

// CommandStatus is a command and what became of it, as the appliance's
// database holds it.
type CommandStatus struct {
	ID         int64      `json:"id"`
	HRN        string     `json:"hrn"`
	Type       string     `json:"type"`
	Command    string     `json:"command,omitempty"`
	Args       []string   `json:"args,omitempty"`
	Image      string     `json:"image,omitempty"`
	Disk       string     `json:"disk,omitempty"`
	Multicast  bool       `json:"multicast,omitempty"` // LOAD_IMAGE: asked for a multicast session
	State      string     `json:"state"`
	Reply      string     `json:"reply,omitempty"`
	ExitCode   *int       `json:"exit_code,omitempty"`
	Stdout     string     `json:"stdout,omitempty"`
	Stderr     string     `json:"stderr,omitempty"`
	Truncated  bool       `json:"truncated,omitempty"` // output beyond the stored maximum was dropped
	Error      string     `json:"error,omitempty"`
	Progress   Progress   `json:"progress"`
	SHA256     string     `json:"sha256,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// RC states in RCStatus.State. A node whose RC has acknowledged REBOOT or
// POWEROFF is rebooting or powered-off at once, not online until its poll
// times out, and stays so until it enrolls again (or, should it not go
// down after all, until it is heard from a poll's wait later).
const (
	RCNotEnrolled = "not-enrolled"
	RCOnline      = "online"  // polling now, or seen within a poll's wait
	RCOffline     = "offline" // not heard from for longer than that
	RCRebooting   = "rebooting"
	RCPoweredOff  = "powered-off"
)

// RCStatus is a node's Resource Controller as the appliance last heard of
// it.
type RCStatus struct {
	HRN        string     `json:"hrn"`
	Enrolled   bool       `json:"enrolled"`
	State      string     `json:"state"`  // one of the RC states above
	Online     bool       `json:"online"` // State is online
	Enrollment int64      `json:"enrollment,omitempty"`
	EnrolledAt *time.Time `json:"enrolled_at,omitempty"`
	LastSeen   *time.Time `json:"last_seen,omitempty"`
	Image      string     `json:"image,omitempty"`
	Hostname   string     `json:"hostname,omitempty"`
	MACs       []string   `json:"macs,omitempty"`
	Addresses  []string   `json:"addresses,omitempty"`
	Kernel     string     `json:"kernel,omitempty"`
	BootID     string     `json:"boot_id,omitempty"`
	Disks      []Disk     `json:"disks,omitempty"`
	Version    string     `json:"version,omitempty"`
	Firmware   string     `json:"firmware,omitempty"`    // as in EnrollRequest: "" is unknown
	SecureBoot *bool      `json:"secure_boot,omitempty"` // as in EnrollRequest: nil is unknown
}

// DiskImage is a disk image stored on the appliance.
type DiskImage struct {
	Name     string    `json:"name"`
	Format   string    `json:"format"` // zstd, gzip or chunked
	Size     int64     `json:"size"`   // bytes as stored (compressed)
	SHA256   string    `json:"sha256"` // of the bytes as stored; of a chunked image, its manifest's digest
	Modified time.Time `json:"modified"`
	// A chunked image's manifest, summed up (all 0 for a single stream,
	// whose disk size is known only by decompressing it).
	DiskSize   int64 `json:"disk_size,omitempty"`
	ChunkSize  int64 `json:"chunk_size,omitempty"`
	Chunks     int   `json:"chunks,omitempty"`
	ZeroChunks int   `json:"zero_chunks,omitempty"`
}
