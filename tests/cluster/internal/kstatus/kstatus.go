// Package kstatus prints the kstatus verdict (sigs.k8s.io/cli-utils status.Compute) of
// Kubernetes objects read as JSON.
package kstatus

import (
	"encoding/json"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// verdict is one object's kstatus result, as a line of JSON.
type verdict struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

// Run reads one object or a List (`kubectl get -o json`) and writes, per object, the
// verdict of sigs.k8s.io/cli-utils' status.Compute: the health Flux and Argo CD read.
func Run(in io.Reader, out, errs io.Writer) int {
	body, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintf(errs, "kstatus: reading stdin: %v\n", err)
		return 1
	}
	var doc unstructured.Unstructured
	if err := doc.UnmarshalJSON(body); err != nil {
		fmt.Fprintf(errs, "kstatus: stdin is not a Kubernetes object: %v\n", err)
		return 1
	}
	objects := []unstructured.Unstructured{doc}
	if doc.IsList() {
		list, err := doc.ToList()
		if err != nil {
			fmt.Fprintf(errs, "kstatus: stdin is not a list: %v\n", err)
			return 1
		}
		objects = list.Items
	}
	encoder := json.NewEncoder(out)
	for i := range objects {
		obj := &objects[i]
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
