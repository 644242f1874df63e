package api

import (
	"fmt"
	"strconv"
	"strings"
	"text/template"
)

// Templates, as Swarm has them, in a container's hostname, its env values and
// its mount sources and targets: {{.Service.Name}}-{{.Task.Slot}}. The API
// refuses a template that does not parse or names a field that does not exist;
// the worker expands them when the task starts, since only it knows its node.

// TemplateContext is what a template may use; the fields are Swarm's.
type TemplateContext struct {
	Service struct {
		ID     string
		Name   string
		Labels map[string]string
	}
	Node struct {
		ID       string
		Hostname string
		Platform struct {
			OS           string
			Architecture string
		}
	}
	Task struct {
		ID   string
		Name string
		// Slot is the replica number; a global task, which has none, gets its
		// node's ID, as Swarm does.
		Slot string
	}
}

// TemplateNode is what a template may know of the node a task runs on.
type TemplateNode struct {
	ID, Hostname, OS, Architecture string
}

// NewTemplateContext describes task t on node n.
func NewTemplateContext(t *Task, n TemplateNode) TemplateContext {
	var c TemplateContext
	c.Service.ID, c.Service.Name, c.Service.Labels = t.ServiceID, t.ServiceName, t.Spec.Labels
	c.Node.ID, c.Node.Hostname = n.ID, n.Hostname
	c.Node.Platform.OS, c.Node.Platform.Architecture = n.OS, n.Architecture
	c.Task.ID = t.ID
	c.Task.Slot = strconv.FormatUint(t.Slot, 10)
	if t.Slot == 0 {
		c.Task.Slot = n.ID
	}
	c.Task.Name = t.ServiceName + "." + c.Task.Slot + "." + t.ID // Swarm's task name
	return c
}

// sampleTemplateContext stands for a task of spec s when the API checks its
// templates: IDs as long as real ones, so a hostname too long is caught early.
func sampleTemplateContext(s *ServiceSpec) TemplateContext {
	t := &Task{ID: strings.Repeat("t", 26), ServiceID: strings.Repeat("s", 12), ServiceName: s.Name, Slot: 1, Spec: *s}
	return NewTemplateContext(t, TemplateNode{ID: strings.Repeat("n", 12), Hostname: "node", OS: "linux", Architecture: "amd64"})
}

// ExpandedSpec is the task's spec with its templates expanded for node n, checked
// as an engine will take it (ValidateExpanded).
func (t *Task) ExpandedSpec(n TemplateNode) (ServiceSpec, error) {
	s, err := t.Spec.expand(NewTemplateContext(t, n))
	if err != nil {
		return s, err
	}
	if err := s.ValidateExpanded(); err != nil {
		return s, err
	}
	return s, nil
}

func hasTemplate(s string) bool { return strings.Contains(s, "{{") }

func parseTemplate(text string) (*template.Template, error) {
	// missingkey=error: {{.Service.Labels.nope}} is an error, not "<no value>".
	return template.New("").Option("missingkey=error").Parse(text)
}

func expandTemplate(text string, c *TemplateContext) (string, error) {
	if !hasTemplate(text) {
		return text, nil
	}
	tmpl, err := parseTemplate(text)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, c); err != nil {
		return "", err
	}
	return b.String(), nil
}

// templated lists the fields of s that may hold templates, with what to call
// them in an error.
func (s *ServiceSpec) templated(visit func(what string, p *string)) {
	for i := range s.Env {
		k, _, _ := strings.Cut(s.Env[i], "=")
		visit("env "+k, &s.Env[i])
	}
	if s.Container != nil {
		visit("hostname", &s.Container.Hostname)
	}
	for i := range s.Mounts {
		visit("mount source", &s.Mounts[i].Source)
		visit("mount target", &s.Mounts[i].Target)
	}
}

// validateTemplates refuses a template that does not parse.
func (s *ServiceSpec) validateTemplates() error {
	var first error
	s.templated(func(what string, p *string) {
		if first != nil || !hasTemplate(*p) {
			return
		}
		if _, err := parseTemplate(*p); err != nil {
			first = fmt.Errorf("invalid template in %s %q: %v", what, *p, templateErr(err))
		}
	})
	return first
}

// expand returns a copy of s with every template expanded for c. Only the value
// of an env entry is a template, as in Swarm: the key stays as written.
func (s *ServiceSpec) expand(c TemplateContext) (ServiceSpec, error) {
	out := s.Clone()
	var first error
	out.templated(func(what string, p *string) {
		if first != nil || !hasTemplate(*p) {
			return
		}
		text, prefix := *p, ""
		if strings.HasPrefix(what, "env ") {
			k, v, _ := strings.Cut(text, "=")
			text, prefix = v, k+"="
		}
		v, err := expandTemplate(text, &c)
		if err != nil {
			first = fmt.Errorf("invalid template in %s %q: %v", what, *p, templateErr(err))
			return
		}
		*p = prefix + v
	})
	return out, first
}

// templateErr drops text/template's "template: :1:2: executing \"\" at <...>:"
// preamble down to what is wrong.
func templateErr(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); strings.HasPrefix(msg, "template: ") && i >= 0 {
		if j := strings.Index(msg, "at <"); j >= 0 {
			// Keep the field it stopped at: at <.Task.Slott>: can't evaluate field Slott ...
			return msg[j:]
		}
		return msg[i+2:]
	}
	return msg
}
