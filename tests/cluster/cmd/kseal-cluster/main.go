// Command kseal-cluster is the real Kubernetes control plane kseal's tests run against,
// in one binary the way k3s and microshift embed it: etcd, kube-apiserver and
// kube-controller-manager from their pinned upstream modules, plus the kstatus verdict
// Flux computes, Argo CD's Lua health checks run as Argo CD runs them, a KMS v2 plugin
// for encryption at rest, a Git server (git-http-backend over HTTP) for Flux, and a
// check of Grafana dashboards against Grafana's schema. The first argument picks the
// component; the rest are that component's own flags, unchanged.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	etcdmain "go.etcd.io/etcd/server/v3/etcdmain"
	encryptionconfig "k8s.io/apiserver/pkg/server/options/encryptionconfig/controller"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"

	"kseal.dev/tests/cluster/internal/argocdhealth"
	"kseal.dev/tests/cluster/internal/dashboardcheck"
	"kseal.dev/tests/cluster/internal/gitserver"
	"kseal.dev/tests/cluster/internal/kmsplugin"
	"kseal.dev/tests/cluster/internal/kstatus"
)

const usage = "usage: kseal-cluster etcd|kube-apiserver|kube-controller-manager|kstatus|argocd-health|kms-plugin|git-server|dashboard-check [flags]"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	exitWithParent()
	component, args := os.Args[1], os.Args[2:]
	os.Args = append([]string{component}, args...)
	switch component {
	case "etcd":
		etcdmain.Main(os.Args)
	case "kube-apiserver":
		// How often --encryption-provider-config-automatic-reload looks at the file (a
		// minute upstream; the variable is exported for integration tests to shorten).
		if poll, err := time.ParseDuration(os.Getenv("KSEAL_ENCRYPTION_CONFIG_POLL")); err == nil {
			encryptionconfig.EncryptionConfigFileChangePollDuration = poll
		}
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(kcm.NewControllerManagerCommand()))
	case "kstatus":
		os.Exit(kstatus.Run(os.Stdin, os.Stdout, os.Stderr))
	case "argocd-health":
		os.Exit(argocdhealth.Run(args, os.Stdin, os.Stdout, os.Stderr))
	case "kms-plugin":
		os.Exit(kmsplugin.Run(args, os.Stderr))
	case "git-server":
		os.Exit(gitserver.Run(args, os.Stderr))
	case "dashboard-check":
		os.Exit(dashboardcheck.Run(args, os.Stdout, os.Stderr))
	default:
		fmt.Fprintf(os.Stderr, "kseal-cluster: unknown component %q\n%s\n", component, usage)
		os.Exit(2)
	}
}

// exitWithParent ends the process when the process named by KSEAL_CLUSTER_PARENT is no
// longer its parent: a test that dies, however it dies, leaves no control plane behind.
func exitWithParent() {
	parent, err := strconv.Atoi(os.Getenv("KSEAL_CLUSTER_PARENT"))
	if err != nil {
		return
	}
	go func() {
		for range time.Tick(200 * time.Millisecond) {
			if os.Getppid() != parent {
				fmt.Fprintln(os.Stderr, "kseal-cluster: parent process gone, exiting")
				os.Exit(1)
			}
		}
	}()
}
