package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/orbit-lab/netboot/internal/amclient"
)

// completionShells are the shells nbctl completion writes a script for.
func completionShells() []string { return []string{"bash"} }

func (k *cli) completion(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("completion", flag.ContinueOnError)
	if err := parseFlags(fs, args, 1, 1); err != nil {
		return err
	}
	if !slices.Contains(completionShells(), fs.Arg(0)) {
		return fmt.Errorf("completion: no script for shell %q (only %s): %w", fs.Arg(0), strings.Join(completionShells(), ", "), errUsage)
	}
	script, err := bashCompletion(ctx)
	if err != nil {
		return err
	}
	_, err = io.WriteString(k.out, script)
	return err
}

// complFlag is what the completion script knows of one flag.
type complFlag struct {
	name    string   // without dashes
	valued  bool     // takes a value (the next word): not a bool flag
	choices []string // the values the synopsis lists (--role viewer|operator|admin)
}

// complCmd is what the completion script knows of one command.
type complCmd struct {
	name  string // "nodes show"
	flags []complFlag
}

// completionTable reads nbctl's command table as the completion script
// needs it: each command's flags are those its own flag set defines (asked
// with flagProbe, from a cli with no client, so that no command can reach
// an appliance), their choices those its synopsis lists.
func completionTable(ctx context.Context) (global []complFlag, cmds []complCmd) {
	var server, tokFile string
	var tlsOpt amclient.TLS
	global = flagsOf(globalFlags(&server, &tlsOpt, &tokFile), "")
	probe := &cli{out: io.Discard, errOut: io.Discard}
	for _, s := range probe.commands() {
		c := complCmd{name: s.name}
		var p probed
		if err := s.run(ctx, []string{flagProbe}); errors.As(err, &p) {
			c.flags = flagsOf(p.fs, s.args)
		}
		cmds = append(cmds, c)
	}
	return global, cmds
}

// choicesRE matches a synopsis word that lists a flag's literal values.
var choicesRE = regexp.MustCompile(`^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)+$`)

// flagsOf lists a flag set's flags, with the choices synopsis gives them.
func flagsOf(fs *flag.FlagSet, synopsis string) []complFlag {
	words := strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(synopsis))
	var out []complFlag
	fs.VisitAll(func(f *flag.Flag) {
		b, isBool := f.Value.(interface{ IsBoolFlag() bool })
		cf := complFlag{name: f.Name, valued: !isBool || !b.IsBoolFlag()}
		if i := slices.Index(words, "--"+f.Name); cf.valued && i >= 0 && i+1 < len(words) && choicesRE.MatchString(words[i+1]) {
			cf.choices = strings.Split(words[i+1], "|")
		}
		out = append(out, cf)
	})
	return out
}

// wordRE is what a command, flag or choice may be for the script to quote
// it as it does.
var wordRE = regexp.MustCompile(`^[a-z][a-z0-9-]*( [a-z][a-z0-9-]*)?$`)

// bashCompletion writes the bash completion script from the command table:
// the first words and subcommands, each command's flags (with --help, which
// every command takes), a flag's listed values, completion's shells and
// help's commands. Operands and other flag values are left to bash's
// file name completion (complete -o default).
func bashCompletion(ctx context.Context) (string, error) {
	global, cmds := completionTable(ctx)
	var firsts []string
	subs := map[string][]string{}
	for _, c := range cmds {
		first, sub, _ := strings.Cut(c.name, " ")
		if !slices.Contains(firsts, first) {
			firsts = append(firsts, first)
		}
		if sub != "" {
			subs[first] = append(subs[first], sub)
		}
	}
	var flagsCase, valuedCase, choicesCase strings.Builder
	add := func(cmd string, flags []complFlag) error {
		names := []string{"--help"}
		var valued []string
		for _, f := range flags {
			if !wordRE.MatchString(f.name) {
				return fmt.Errorf("completion: flag %q of %q: not a plain word", f.name, cmd)
			}
			names = append(names, "--"+f.name)
			if f.valued {
				valued = append(valued, f.name)
			}
			if len(f.choices) > 0 {
				// The key is "COMMAND FLAG", " FLAG" for nbctl's own.
				fmt.Fprintf(&choicesCase, "\t%q) echo %q ;;\n", cmd+" "+f.name, strings.Join(f.choices, " "))
			}
		}
		fmt.Fprintf(&flagsCase, "\t%q) echo %q ;;\n", cmd, strings.Join(names, " "))
		if len(valued) > 0 {
			fmt.Fprintf(&valuedCase, "\t%q) echo %q ;;\n", cmd, strings.Join(valued, " "))
		}
		return nil
	}
	if err := add("", global); err != nil {
		return "", err
	}
	for _, c := range cmds {
		if !wordRE.MatchString(c.name) {
			return "", fmt.Errorf("completion: command %q: not one or two plain words", c.name)
		}
		if err := add(c.name, c.flags); err != nil {
			return "", err
		}
	}
	var subsCase strings.Builder
	for _, f := range firsts {
		if len(subs[f]) > 0 {
			fmt.Fprintf(&subsCase, "\t%q) echo %q ;;\n", f, strings.Join(subs[f], " "))
		}
	}
	r := strings.NewReplacer(
		"@FIRSTS@", strings.Join(firsts, " "),
		"@SHELLS@", strings.Join(completionShells(), " "),
		"@FLAGS@", flagsCase.String(),
		"@VALUED@", valuedCase.String(),
		"@CHOICES@", choicesCase.String(),
		"@SUBS@", subsCase.String(),
	)
	return r.Replace(bashTemplate), nil
}

// bashTemplate is the script; the @NAMES@ are filled from the command
// table. Go's flag package ends a command's flags at its first operand or
// at --, and takes -flag as --flag and --flag=value: so does the script.
// Bash splits --flag=value at the = (COMP_WORDBREAKS), into three words.
const bashTemplate = `# bash completion for nbctl. Written by "nbctl completion bash" from
# nbctl's command table: write it anew rather than edit it.

# The flags of a command ("" for nbctl's own), as offered.
_nbctl_flags() {
	case $1 in
@FLAGS@	esac
}

# The flags of a command that take a value, without dashes.
_nbctl_valued() {
	case $1 in
@VALUED@	esac
}

# The values a command's flag takes, where its synopsis lists them.
_nbctl_choices() {
	case $1 in
@CHOICES@	esac
}

# The commands under a first word.
_nbctl_subs() {
	case $1 in
@SUBS@	esac
}

# _nbctl_skip CMD moves i past CMD's flags and their values. It fails when
# the word under the cursor is a flag's value, with COMPREPLY set to the
# flag's listed values if any (none: file names).
_nbctl_skip() {
	local w n
	while (( i < COMP_CWORD )); do
		w=${COMP_WORDS[i]}
		[[ $w == -* && $w != -- ]] || return 0
		n=${w#-}
		n=${n#-}
		if [[ ${COMP_WORDS[i+1]} == = ]]; then
			(( i += 3 ))
		elif [[ " $(_nbctl_valued "$1") " == *" $n "* ]]; then
			(( i += 2 ))
		else
			(( i += 1 ))
		fi
	done
	(( i == COMP_CWORD )) && return 0
	if [[ ${COMP_WORDS[COMP_CWORD-1]} != = ]]; then
		COMPREPLY=($(compgen -W "$(_nbctl_choices "$1 $n")" -- "$cur"))
	fi
	return 1
}

_nbctl() {
	local cur=${COMP_WORDS[COMP_CWORD]} i=1 w cmd subs
	COMPREPLY=()
	_nbctl_skip "" || return 0
	if (( i == COMP_CWORD )); then
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "$(_nbctl_flags "")" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "@FIRSTS@ help" -- "$cur"))
		fi
		return 0
	fi
	cmd=${COMP_WORDS[i]}
	(( i += 1 ))
	if [[ $cmd == help ]]; then
		if (( i == COMP_CWORD )); then
			COMPREPLY=($(compgen -W "@FIRSTS@" -- "$cur"))
		elif (( i + 1 == COMP_CWORD )); then
			COMPREPLY=($(compgen -W "$(_nbctl_subs "${COMP_WORDS[i]}")" -- "$cur"))
		fi
		return 0
	fi
	subs=$(_nbctl_subs "$cmd")
	if [[ -n $subs ]]; then
		if (( i == COMP_CWORD )) && [[ $cur != -* ]]; then
			COMPREPLY=($(compgen -W "$subs" -- "$cur"))
			return 0
		fi
		if [[ " $subs " == *" ${COMP_WORDS[i]} "* ]]; then
			cmd="$cmd ${COMP_WORDS[i]}"
			(( i += 1 ))
		fi
	fi
	_nbctl_skip "$cmd" || return 0
	(( i == COMP_CWORD )) || return 0
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(_nbctl_flags "$cmd")" -- "$cur"))
	elif [[ $cmd == completion ]]; then
		COMPREPLY=($(compgen -W "@SHELLS@" -- "$cur"))
	fi
	return 0
}

complete -o default -F _nbctl nbctl
`
