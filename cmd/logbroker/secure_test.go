package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestPasswd(t *testing.T) {
	// Few successful cases: each costs a bcrypt at the default cost, which
	// takes seconds under -race.
	cases := []struct {
		name, stdin string
		password    string // "" : want an error
	}{
		{"CRLFFirstLineOnly", "  two words\r\nignored\n", "  two words"},
		{"NoNewline", "s3cret", "s3cret"},
		{"Empty", "", ""},
		{"EmptyLine", "\nx\n", ""},
		{"TooLong", strings.Repeat("x", 73) + "\n", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := passwd(nil, strings.NewReader(c.stdin), &out, &errOut)
			if c.password == "" {
				if err == nil {
					t.Fatalf("passwd accepted %q: %s", c.stdin, out.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hash := strings.TrimSuffix(out.String(), "\n")
			if strings.Contains(hash, "\n") {
				t.Fatalf("output is not one line: %q", out.String())
			}
			if bcrypt.CompareHashAndPassword([]byte(hash), []byte(c.password)) != nil {
				t.Fatalf("hash %q does not accept %q", hash, c.password)
			}
		})
	}
}

func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	t.Run("Neither", func(t *testing.T) {
		c, err := loadTLS("", "")
		if c != nil || err != nil {
			t.Fatalf("got %v, %v; want no TLS", c, err)
		}
	})
	t.Run("Both", func(t *testing.T) {
		c, err := loadTLS(cert, key)
		if err != nil || c == nil || len(c.Certificates) != 1 {
			t.Fatalf("got %v, %v", c, err)
		}
	})
	for _, c := range []struct{ name, cert, key, want string }{
		{"CertOnly", cert, "", "go together"},
		{"KeyOnly", "", key, "go together"},
		{"MissingFile", filepath.Join(dir, "nope.pem"), key, "no such file"},
		{"Swapped", key, cert, "load TLS key pair"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := loadTLS(c.cert, c.key)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
}

func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
