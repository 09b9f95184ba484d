// Package argocdhealth runs an Argo CD resource health check, a Lua script, on
// Kubernetes objects the way Argo CD's application controller runs one: in gopher-lua
// (the interpreter Argo CD embeds, at the version Argo CD v3.5 pins), with the object as
// the global `obj`, a one-second deadline, and the table the script returns read as a
// health status. Argo CD gives a script from `argocd-cm` only the base, table and package
// libraries (and a reduced `os`, left out here: a check that needs it fails here rather
// than pass here and fail there); the scripts it ships get every standard library
// (`-builtin`).
package argocdhealth

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"

	"kseal.dev/tests/cluster/internal/objects"
)

// status is Argo CD's health status of one object, as a line of JSON.
type status struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

// The status codes Argo CD accepts from a script; any other becomes Unknown.
var codes = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

// Run reads one object or a List (JSON or YAML, as `kubectl get -o json` writes it) and
// writes, per object, the health the script given by -script assigns it. A script that
// fails or returns no table is an error (exit 1), as Argo CD reports it.
func Run(args []string, in io.Reader, out, errs io.Writer) int {
	flags := flag.NewFlagSet("argocd-health", flag.ContinueOnError)
	flags.SetOutput(errs)
	scriptPath := flags.String("script", "", "the health check (a Lua file)")
	builtin := flags.Bool("builtin", false, "open every standard library, as Argo CD does for the checks it ships")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	script, err := os.ReadFile(*scriptPath)
	if err != nil {
		fmt.Fprintf(errs, "argocd-health: -script: %v\n", err)
		return 2
	}
	items, err := objects.Read(in)
	if err != nil {
		fmt.Fprintf(errs, "argocd-health: %v\n", err)
		return 1
	}
	encoder := json.NewEncoder(out)
	for i := range items {
		obj := &items[i]
		code, message, err := assess(string(script), *builtin, obj.Object)
		if err != nil {
			fmt.Fprintf(errs, "argocd-health: %s/%s: %v\n", obj.GetNamespace(), obj.GetName(), err)
			return 1
		}
		if err := encoder.Encode(status{obj.GetNamespace(), obj.GetName(), code, message}); err != nil {
			fmt.Fprintf(errs, "argocd-health: %v\n", err)
			return 1
		}
	}
	return 0
}

// assess runs the script on one object and returns the status code and message.
func assess(script string, builtin bool, object map[string]any) (string, string, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !builtin})
	defer l.Close()
	if !builtin {
		// In Argo CD's order: package first, whose loaded-modules table the others join.
		for _, lib := range []struct {
			name string
			open lua.LGFunction
		}{
			{lua.LoadLibName, lua.OpenPackage},
			{lua.BaseLibName, lua.OpenBase},
			{lua.TabLibName, lua.OpenTable},
		} {
			if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
				return "", "", fmt.Errorf("opening %s: %w", lib.name, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, object))
	if err := l.DoString(script); err != nil {
		return "", "", err
	}
	returned := l.Get(-1)
	if returned.Type() != lua.LTTable {
		return "", "", fmt.Errorf("the script returned %s, not a table", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return "", "", err
	}
	var result struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(encoded, &result); err != nil {
		return "", "", fmt.Errorf("the returned table is not a health status: %w", err)
	}
	if !codes[result.Status] {
		return "Unknown", "Lua returned an invalid health status", nil
	}
	return result.Status, result.Message, nil
}

// toLua converts a decoded object to Lua values: maps to tables by key, lists to
// sequences, numbers (int64 from the object, float64 otherwise) to Lua numbers.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}
