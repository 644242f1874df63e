package api

import (
	"fmt"
	"regexp"
)

// Stacks (swarmlet stack deploy): a compose file's services become services named
// STACK_SERVICE and labelled with the stack, as Docker Swarm names and labels them,
// so tools that know Swarm's labels find them. The stack is nothing stored of its
// own: it is the set of services (and secrets, configs) carrying its label.

// LabelStackNamespace names the stack a service (and its containers, secrets and
// configs) belongs to: Docker's label, kept for the tools that read it.
const LabelStackNamespace = "com.docker.stack.namespace"

// LabelStackImage is the image the compose file named, as Docker labels it.
const LabelStackImage = "com.docker.stack.image"

// StackSeparator joins a stack's name and a compose service's name. Stack names
// cannot hold it, so STACK_SERVICE splits one way only.
const StackSeparator = "_"

var stackNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateStackName checks a stack's name: a DNS label without '_', so that the
// services' names STACK_SERVICE say where the stack ends.
func ValidateStackName(name string) error {
	if !stackNameRE.MatchString(name) {
		return fmt.Errorf("invalid stack name %q: use 1-63 lower-case letters, digits and '-', starting and ending with a letter or digit", name)
	}
	return nil
}

// StackServiceName is the name of compose service svc of stack.
func StackServiceName(stack, svc string) string { return stack + StackSeparator + svc }
