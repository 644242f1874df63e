package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/template"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/swarmlet/swarmlet/node/client"
)

// Output in docker's shapes. --format takes:
//   - "" or "table": the command's default table;
//   - "table TEMPLATE": a table whose columns the template names, header included;
//   - "json": a JSON array of objects with the lower-case keys CLI.md fixes;
//   - any other Go template, run once per row ({{json .}} prints a row as docker does).
// Templates see a row's docker-named fields (.ID, .Name, .Replicas, ...), which
// tables show truncated as docker does unless --no-trunc.

// output holds the flags every listing takes.
type output struct {
	format  string
	quiet   bool
	noTrunc bool
}

func (o *output) flags(c *cobra.Command, what string) {
	c.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "print "+what+" only")
	c.Flags().StringVar(&o.format, "format", "", "table, json, 'table TEMPLATE' or a Go template (e.g. '{{.Name}}' or '{{json .}}')")
}

func (o *output) truncFlag(c *cobra.Command) {
	c.Flags().BoolVar(&o.noTrunc, "no-trunc", false, "do not truncate IDs and errors")
}

// listing says how one command's rows print.
type listing[T any] struct {
	table   string            // the default table, as a "table ..." template
	headers map[string]string // template field -> column header
	id      func(T) string    // what -q prints
	view    func(T) any       // the row as templates see it
}

// templateFuncs are docker's template functions.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // "30000->80/tcp", as docker prints it
		err := enc.Encode(v)
		return strings.TrimSuffix(b.String(), "\n"), err
	},
	"join":  strings.Join,
	"split": strings.Split,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": capitalize,
	"pad": func(s string, before, after int) string {
		return strings.Repeat(" ", before) + s + strings.Repeat(" ", after)
	},
	"truncate": func(s string, n int) string { return truncate(s, n) },
}

// parsedFormat is a --format checked before anything is fetched.
type parsedFormat struct {
	json  bool
	table bool
	tmpl  *template.Template
	text  string
}

// parseFormat checks a --format against the row type, so a typo fails at once
// with one clear line, before any request.
func parseFormat(format, table string, zero any) (parsedFormat, error) {
	switch f := strings.TrimSpace(format); {
	case f == "json":
		return parsedFormat{json: true}, nil
	case f == "" || f == "table":
		format = table
	}
	p := parsedFormat{}
	text := format
	if rest, ok := strings.CutPrefix(strings.TrimLeft(format, " "), "table"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
		p.table, text = true, strings.TrimLeft(rest, " ")
	}
	if !strings.Contains(text, "{{") {
		// Text with no action prints the same line for every row: a typo of
		// json or table far more often than what was meant.
		return p, fmt.Errorf("invalid --format %q: use table, json, 'table TEMPLATE' or a Go template such as '{{.ID}}'", format)
	}
	// Like the docker CLI: \t and \n written in a shell argument mean tab and newline.
	text = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(text)
	t, err := template.New("format").Funcs(templateFuncs).Parse(text)
	if err != nil {
		return p, fmt.Errorf("invalid --format %q: %v", format, strings.TrimPrefix(err.Error(), "template: "))
	}
	if zero != nil {
		if err := t.Execute(io.Discard, zero); err != nil {
			return p, fmt.Errorf("invalid --format %q: %v", format, strings.TrimPrefix(err.Error(), "template: "))
		}
	}
	p.tmpl, p.text = t, text
	return p, nil
}

// print writes rows as o asks.
func (l listing[T]) print(w io.Writer, o output, rows []T) error {
	var zero T
	p, err := parseFormat(o.format, l.table, l.view(zero))
	if err != nil {
		return err
	}
	switch {
	case o.quiet:
		for _, r := range rows {
			fmt.Fprintln(w, l.id(r))
		}
		return nil
	case p.json:
		if rows == nil {
			rows = []T{}
		}
		return printJSON(w, rows)
	}
	var out io.Writer = w
	var tw interface{ Flush() error }
	if p.table {
		t := table(w)
		out, tw = t, t
		if h := header(p.text, l.headers); h != "" {
			fmt.Fprintln(out, h)
		}
	}
	for _, r := range rows {
		var b bytes.Buffer
		if err := p.tmpl.Execute(&b, l.view(r)); err != nil {
			return fmt.Errorf("--format: %v", strings.TrimPrefix(err.Error(), "template: "))
		}
		fmt.Fprintln(out, b.String())
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

// header runs the table's template on the column names, as docker does: each
// {{.Field}} prints its header.
func header(text string, headers map[string]string) string {
	t, err := template.New("header").Funcs(templateFuncs).Option("missingkey=zero").Parse(text)
	if err != nil {
		return ""
	}
	var b bytes.Buffer
	if t.Execute(&b, headers) != nil {
		return ""
	}
	return b.String()
}

// truncate shortens s to n runes, marking the cut with an ellipsis as docker does.
func truncate(s string, n int) string {
	if n <= 0 || utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return strings.ToUpper(string(r)) + s[n:]
}

// shortID is docker's 12-character ID in tables.
func shortID(id string, noTrunc bool) string {
	if noTrunc || len(id) <= 12 {
		return id
	}
	return id[:12]
}

// newInspect prints the full JSON of each named object, as docker's inspect does,
// or each through --format's template.
func newInspect[T any](use, short string, get func(*client.Client, context.Context, string) (T, error)) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use: use, Short: short, Args: cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			var p parsedFormat
			if format != "" && format != "json" {
				var err error
				var zero T
				if p, err = parseFormat(format, "", zero); err != nil {
					return err
				}
			}
			cl, ctx, cancel, err := connect()
			if err != nil {
				return err
			}
			defer cancel()
			out := make([]T, 0, len(args))
			for _, a := range args {
				v, err := get(cl, ctx, a)
				if err != nil {
					return err
				}
				out = append(out, v)
			}
			if p.tmpl == nil {
				return printJSON(c.OutOrStdout(), out)
			}
			for _, v := range out {
				var b bytes.Buffer
				if err := p.tmpl.Execute(&b, v); err != nil {
					return fmt.Errorf("--format: %v", strings.TrimPrefix(err.Error(), "template: "))
				}
				fmt.Fprintln(c.OutOrStdout(), b.String())
			}
			return nil
		},
	}
	c.Flags().StringVarP(&format, "format", "f", "", "a Go template over the object's fields (e.g. '{{.Spec.Name}}'), or json")
	return c
}
