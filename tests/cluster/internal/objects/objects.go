// Package objects reads the Kubernetes objects the harness's checkers are given on stdin:
// one object or a List, as `kubectl get -o json` (or `-o yaml`) prints it.
package objects

import (
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Read returns the objects in `in`: the items of a List, or the one object.
func Read(in io.Reader) ([]unstructured.Unstructured, error) {
	body, err := io.ReadAll(in)
	if err != nil {
		return nil, fmt.Errorf("reading stdin: %w", err)
	}
	body, err = yaml.YAMLToJSON(body)
	if err != nil {
		return nil, fmt.Errorf("stdin is neither JSON nor YAML: %w", err)
	}
	var doc unstructured.Unstructured
	if err := doc.UnmarshalJSON(body); err != nil {
		return nil, fmt.Errorf("stdin is not a Kubernetes object: %w", err)
	}
	if !doc.IsList() {
		return []unstructured.Unstructured{doc}, nil
	}
	list, err := doc.ToList()
	if err != nil {
		return nil, fmt.Errorf("stdin is not a list: %w", err)
	}
	return list.Items, nil
}
