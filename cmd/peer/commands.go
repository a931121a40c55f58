package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command is one subcommand: its own flag set, parsed inside Run.
type command struct {
	name  string
	args  string // synopsis after "peer NAME"
	short string // one line for `peer help`
	long  string // paragraphs for `peer help NAME`
	run   func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the table `peer` dispatches on, in the order help lists them.
var commands []*command

// Commands' run functions name their own command (for its usage), so they
// are bound here rather than in the literals, which would be an
// initialization cycle.
func init() {
	daemonCmd.run = runDaemon
	statusCmd.run = runStatus
	ringCmd.run = runRing
	shareCmd.run = runShare
	fetchCmd.run = runFetch
	helpCmd.run = runHelp
	tuiCmd.run = runTUI
	commands = []*command{daemonCmd, shareCmd, fetchCmd, statusCmd, ringCmd, tuiCmd, helpCmd}
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run dispatches args (without the program name) to a command.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		printUsage(stderr)
		return errUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help":
		printUsage(stdout)
		return nil
	}
	c := lookupCommand(name)
	if c == nil {
		fmt.Fprintf(stderr, "peer: unknown command %q\n\n", name)
		printUsage(stderr)
		return errUsage
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, "peer runs a chordshare peer (a node of a Chord ring over libp2p) and talks to it.\n\n")
	fmt.Fprint(w, "usage:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  peer %-8s %s\n", c.name, c.args)
	}
	fmt.Fprint(w, "\ncommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.short)
	}
	fmt.Fprint(w, "\nThe repo is --repo DIR, else $PEER_REPO, else ~/.chordshare.\n")
	fmt.Fprint(w, "Run 'peer help COMMAND' for a command's flags.\n")
}

var helpCmd = &command{
	name:  "help",
	args:  "[COMMAND]",
	short: "show this help, or a command's",
}

func runHelp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	switch len(args) {
	case 0:
		printUsage(stdout)
		return nil
	case 1:
		switch args[0] {
		case "-h", "-help", "--help", helpCmd.name:
			printUsage(stdout)
			return nil
		}
		c := lookupCommand(args[0])
		if c == nil {
			fmt.Fprintf(stderr, "peer help: unknown command %q\n\n", args[0])
			printUsage(stderr)
			return errUsage
		}
		// -h prints the usage to the command's stderr: here, stdout.
		if err := c.run(ctx, []string{"-h"}, stdout, stdout); !errors.Is(err, errHelp) {
			return err
		}
		return nil
	}
	fmt.Fprintln(stderr, "usage: peer help [COMMAND]")
	return errUsage
}

// newFlagSet makes a command's flag set; errors and -h go to out.
func newFlagSet(c *command, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("peer "+c.name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: peer %s %s\n\n", c.name, c.args)
		if c.long != "" {
			fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(c.long))
		}
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprint(w, "flags:\n")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args; a command takes no positional arguments unless
// it says so with maxArgs.
func parseFlags(fs *flag.FlagSet, args []string, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage // the flag package printed the error and the usage
	}
	if fs.NArg() > maxArgs {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(maxArgs))
		fs.Usage()
		return errUsage
	}
	return nil
}

// parseArgs parses args with flags before, between and after the
// positional arguments (`peer fetch CID -o PATH`), which the flag package
// alone stops at; after "--" everything is positional. It wants between
// minArgs and maxArgs positional arguments, named by what in the message.
func parseArgs(fs *flag.FlagSet, args []string, minArgs, maxArgs int, what string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, errUsage // the flag package printed the error and the usage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	switch {
	case len(pos) < minArgs:
		fmt.Fprintf(fs.Output(), "%s: missing %s\n", fs.Name(), what)
	case len(pos) > maxArgs:
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), pos[maxArgs])
	default:
		return pos, nil
	}
	fs.Usage()
	return nil, errUsage
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// setFlags names the flags given on the command line.
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}
