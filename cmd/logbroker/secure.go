package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/logbroker/logbroker/hooks"
)

// loadTLS loads the listeners' certificate; both files or neither.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load TLS key pair: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// reloadOnHUP reloads the users file on SIGHUP; a bad file keeps the old one.
func reloadOnHUP(path string, auth *hooks.Auth, log *slog.Logger) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				users, err := hooks.LoadUsers(path)
				if err != nil {
					log.Error("users file not reloaded; keeping the previous one", "file", path, "err", err)
					continue
				}
				auth.Reload(users)
				log.Info("users file reloaded", "file", path, "users", len(users))
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		cancel()
		<-done
	}
}

// passwd reads a password from stdin (its first line) and prints its bcrypt hash.
func passwd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("passwd", "passwd < password   (prints the bcrypt hash for a users file)", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read password: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return errors.New("passwd: empty password on standard input")
	}
	h, err := hooks.HashPassword([]byte(pw))
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h)
	return nil
}
