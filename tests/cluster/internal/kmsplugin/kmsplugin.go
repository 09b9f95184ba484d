// Package kmsplugin is a KMS v2 plugin for tests.
package kmsplugin

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/kms/pkg/service"
)

// kmsPlugin is a KMS v2 plugin for tests: it wraps the apiserver's data keys with
// AES-256-GCM under a key of its own, made at start and held in memory only, and
// reports one key id. It stands where Vault or a cloud KMS would.
type kmsPlugin struct {
	aead  cipher.AEAD
	keyID string
}

func (p *kmsPlugin) Encrypt(_ context.Context, _ string, data []byte) (*service.EncryptResponse, error) {
	nonce := make([]byte, p.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	sealed := p.aead.Seal(nonce, nonce, data, []byte(p.keyID))
	return &service.EncryptResponse{Ciphertext: sealed, KeyID: p.keyID}, nil
}

func (p *kmsPlugin) Decrypt(_ context.Context, _ string, req *service.DecryptRequest) ([]byte, error) {
	if req.KeyID != p.keyID {
		return nil, fmt.Errorf("unknown key id %q", req.KeyID)
	}
	n := p.aead.NonceSize()
	if len(req.Ciphertext) < n {
		return nil, errors.New("ciphertext too short")
	}
	return p.aead.Open(nil, req.Ciphertext[:n], req.Ciphertext[n:], []byte(p.keyID))
}

func (p *kmsPlugin) Status(context.Context) (*service.StatusResponse, error) {
	return &service.StatusResponse{Version: "v2", Healthz: "ok", KeyID: p.keyID}, nil
}

// Run serves the plugin on a unix socket until SIGTERM or SIGINT.
func Run(args []string, errs io.Writer) int {
	flags := flag.NewFlagSet("kms-plugin", flag.ContinueOnError)
	flags.SetOutput(errs)
	socket := flags.String("socket", "", "unix socket path to serve on")
	keyID := flags.String("key-id", "kseal-test-1", "the key id to report")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *socket == "" {
		fmt.Fprintln(errs, "kms-plugin: --socket is required")
		return 2
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		fmt.Fprintf(errs, "kms-plugin: %v\n", err)
		return 1
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		fmt.Fprintf(errs, "kms-plugin: %v\n", err)
		return 1
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		fmt.Fprintf(errs, "kms-plugin: %v\n", err)
		return 1
	}
	_ = os.Remove(*socket)
	server := service.NewGRPCService(*socket, 5*time.Second, &kmsPlugin{aead, *keyID})
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		server.Shutdown()
	}()
	if err := server.ListenAndServe(); err != nil {
		fmt.Fprintf(errs, "kms-plugin: %v\n", err)
		return 1
	}
	return 0
}
