// Package kstatus prints the kstatus verdict (sigs.k8s.io/cli-utils status.Compute) of
// Kubernetes objects read as JSON or YAML.
package kstatus

import (
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/cli-utils/pkg/kstatus/status"

	"kseal.dev/tests/cluster/internal/objects"
)

// verdict is one object's kstatus result, as a line of JSON.
type verdict struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

// Run reads one object or a List (`kubectl get -o json`; see objects.Read) and writes, per object, the
// verdict of sigs.k8s.io/cli-utils' status.Compute: the health Flux and Argo CD read.
func Run(in io.Reader, out, errs io.Writer) int {
	items, err := objects.Read(in)
	if err != nil {
		fmt.Fprintf(errs, "kstatus: %v\n", err)
		return 1
	}
	encoder := json.NewEncoder(out)
	for i := range items {
		obj := &items[i]
		result, err := status.Compute(obj)
		if err != nil {
			fmt.Fprintf(errs, "kstatus: %s/%s: %v\n", obj.GetNamespace(), obj.GetName(), err)
			return 1
		}
		line := verdict{obj.GetNamespace(), obj.GetName(), result.Status.String(), result.Message}
		if err := encoder.Encode(line); err != nil {
			fmt.Fprintf(errs, "kstatus: writing stdout: %v\n", err)
			return 1
		}
	}
	return 0
}
