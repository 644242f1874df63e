package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/sirupsen/logrus"

	"github.com/swarmlet/swarmlet/api"
)

// Options say what to load.
type Options struct {
	Name  string   // the stack's name (compose's project name)
	Files []string // compose files, merged in order as compose merges them; "-" is stdin
	// Env is the environment the files are interpolated with (K=V), before a
	// .env file beside the first file; the CLI passes its own.
	Env []string
	// Profiles are the compose profiles to enable (none given: those of
	// COMPOSE_PROFILES in Env): services in other profiles are left out.
	Profiles []string
}

// Stack is what the files declare, as swarmlet runs it.
type Stack struct {
	Name     string
	Services []api.ServiceSpec // sorted by name, normalized and validated
	Secrets  []Object          // those the services use, sorted by stored name
	Configs  []Object
	// Warnings name everything the files ask for that a stack does not do.
	Warnings []string
}

// Object is a secret or config the stack's services use.
type Object struct {
	Key      string // its key in the compose file
	Name     string // its stored name: STACK_KEY unless the file names it
	External bool   // it must exist already; Data is nil
	Data     []byte
	From     string // where Data comes from, for the plan: "file PATH", "environment VAR", "content"
	Labels   map[string]string
}

// Load reads, interpolates and merges the files with compose-go's own loader
// (extends, profiles, include and env_file are its), and maps the result to
// service specs. Bad input is an error naming the file or the key; nothing
// here talks to a cluster.
func Load(ctx context.Context, o Options) (*Stack, error) {
	if err := api.ValidateStackName(o.Name); err != nil {
		return nil, err
	}
	if len(o.Files) == 0 {
		return nil, errors.New("no compose file: give one with -c FILE")
	}
	var found []loader.UnsupportedAttribute
	popts, err := cli.NewProjectOptions(o.Files,
		cli.WithName(o.Name),
		cli.WithEnv(o.Env),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithDefaultProfiles(o.Profiles...), // else COMPOSE_PROFILES, as compose
		cli.WithResolvedPaths(true),
		cli.WithLoadOptions(loader.WithSupportedAttributes(supportedPaths(), func(f []loader.UnsupportedAttribute) { found = f })),
	)
	if err != nil {
		return nil, fmt.Errorf("compose files: %w", err)
	}
	logs := captureLog()
	project, err := popts.LoadProject(ctx)
	notes := logs.stop()
	if err != nil {
		return nil, fmt.Errorf("compose file: %s", oneLine(err))
	}
	st, err := convert(project)
	if err != nil {
		return nil, err
	}
	st.Warnings = append(append(notes, unsupportedWarnings(found)...), st.Warnings...)
	return st, nil
}

var (
	additionalRE = regexp.MustCompile(`(?:(\S*[^\s:]) )?additional propert(?:y|ies) ((?:'[^']*'(?:, )?)+) not allowed`)
	falseRE      = regexp.MustCompile(`(\S+) false schema`)
	quotedRE     = regexp.MustCompile(`'([^']*)'`)
)

// oneLine keeps a loader error on the one line the CLI prints, and words the
// schema's refusals of keys it does not know as what they are.
func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	s = additionalRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := additionalRE.FindStringSubmatch(m)
		var keys []string
		for _, q := range quotedRE.FindAllStringSubmatch(sub[2], -1) {
			if sub[1] != "" {
				q[1] = sub[1] + "." + q[1]
			}
			keys = append(keys, q[1])
		}
		return "unknown key " + strings.Join(keys, ", ")
	})
	return falseRE.ReplaceAllString(s, "unknown key $1")
}

// compose-go warns through logrus's standard logger (a variable that is not
// set, an obsolete version key): those notes are the user's, so they are
// collected and shown as warnings instead of logrus's own lines on stderr.
var logMu sync.Mutex

type logNotes struct {
	msgs    []string
	restore func()
}

func (n *logNotes) Levels() []logrus.Level {
	return []logrus.Level{logrus.WarnLevel, logrus.ErrorLevel}
}
func (n *logNotes) Fire(e *logrus.Entry) error {
	n.msgs = append(n.msgs, e.Message)
	return nil
}

func captureLog() *logNotes {
	logMu.Lock()
	std := logrus.StandardLogger()
	out, level := std.Out, std.GetLevel()
	n := &logNotes{}
	hooks := std.ReplaceHooks(logrus.LevelHooks{})
	std.AddHook(n)
	std.SetOutput(io.Discard)
	std.SetLevel(logrus.WarnLevel)
	n.restore = func() {
		std.ReplaceHooks(hooks)
		std.SetOutput(out)
		std.SetLevel(level)
		logMu.Unlock()
	}
	return n
}

func (n *logNotes) stop() []string {
	n.restore()
	msgs := n.msgs
	sort.Strings(msgs)
	return msgs
}
