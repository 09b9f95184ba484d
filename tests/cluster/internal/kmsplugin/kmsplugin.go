// Package kmsplugin is a KMS v2 plugin for tests.
package kmsplugin

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"k8s.io/kms/pkg/service"
)

// kmsPlugin is a KMS v2 plugin for tests: it wraps the apiserver's data keys with
// AES-256-GCM under a key derived from a root key and the key id, so that after a
// rotation it still opens what older key ids wrapped, as a real KMS keeps old key
// versions. The root key is made at first start and kept in --key-file (so a restarted
// plugin opens what it wrapped before), or in memory only without one. It stands where
// Vault or a cloud KMS would.
//
// A test steers it through a control file, read again on every call: a line
// `key-id=ID` rotates the key new data keys are wrapped under, and `healthy=false`
// makes every call fail and Status report the plugin unhealthy.
type kmsPlugin struct {
	seed    []byte
	keyID   string
	control string
}

// state is the key id in use and whether the plugin answers.
func (p *kmsPlugin) state() (keyID string, healthy bool) {
	keyID, healthy = p.keyID, true
	file, err := os.Open(p.control)
	if err != nil {
		return keyID, healthy
	}
	defer file.Close()
	lines := bufio.NewScanner(file)
	for lines.Scan() {
		name, value, _ := strings.Cut(strings.TrimSpace(lines.Text()), "=")
		switch name {
		case "key-id":
			keyID = value
		case "healthy":
			healthy = value != "false"
		}
	}
	return keyID, healthy
}

var errUnhealthy = errors.New("the plugin was made unhealthy by its control file")

func (p *kmsPlugin) aead(keyID string) (cipher.AEAD, error) {
	mac := hmac.New(sha256.New, p.seed)
	mac.Write([]byte(keyID))
	block, err := aes.NewCipher(mac.Sum(nil))
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func (p *kmsPlugin) Encrypt(_ context.Context, _ string, data []byte) (*service.EncryptResponse, error) {
	keyID, healthy := p.state()
	if !healthy {
		return nil, errUnhealthy
	}
	aead, err := p.aead(keyID)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	sealed := aead.Seal(nonce, nonce, data, []byte(keyID))
	return &service.EncryptResponse{Ciphertext: sealed, KeyID: keyID}, nil
}

func (p *kmsPlugin) Decrypt(_ context.Context, _ string, req *service.DecryptRequest) ([]byte, error) {
	if _, healthy := p.state(); !healthy {
		return nil, errUnhealthy
	}
	aead, err := p.aead(req.KeyID)
	if err != nil {
		return nil, err
	}
	n := aead.NonceSize()
	if len(req.Ciphertext) < n {
		return nil, errors.New("ciphertext too short")
	}
	return aead.Open(nil, req.Ciphertext[:n], req.Ciphertext[n:], []byte(req.KeyID))
}

func (p *kmsPlugin) Status(context.Context) (*service.StatusResponse, error) {
	keyID, healthy := p.state()
	healthz := "ok"
	if !healthy {
		healthz = errUnhealthy.Error()
	}
	return &service.StatusResponse{Version: "v2", Healthz: healthz, KeyID: keyID}, nil
}

// Run serves the plugin on a unix socket until SIGTERM or SIGINT.
func Run(args []string, errs io.Writer) int {
	flags := flag.NewFlagSet("kms-plugin", flag.ContinueOnError)
	flags.SetOutput(errs)
	socket := flags.String("socket", "", "unix socket path to serve on")
	keyID := flags.String("key-id", "kseal-test-1", "the key id to report until the control file names another")
	keyFile := flags.String("key-file", "", "where the root key is kept (made when missing); in memory only when empty")
	control := flags.String("control", "", "control file: key-id=ID and healthy=true|false lines, read on every call")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *socket == "" {
		fmt.Fprintln(errs, "kms-plugin: --socket is required")
		return 2
	}
	seed, err := rootKey(*keyFile)
	if err != nil {
		fmt.Fprintf(errs, "kms-plugin: --key-file %s: %v\n", *keyFile, err)
		return 1
	}
	_ = os.Remove(*socket)
	server := service.NewGRPCService(*socket, 5*time.Second, &kmsPlugin{seed, *keyID, *control})
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

// rootKey reads the 32-byte root key from path, or makes one and writes it there
// (mode 0600) when the file does not exist yet.
func rootKey(path string) ([]byte, error) {
	if path != "" {
		key, err := os.ReadFile(path)
		if err == nil {
			if len(key) != 32 {
				return nil, fmt.Errorf("holds %d bytes, not 32", len(key))
			}
			return key, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if path != "" {
		if err := os.WriteFile(path, key, 0o600); err != nil {
			return nil, err
		}
	}
	return key, nil
}
