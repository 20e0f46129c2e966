package hooks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/logbroker/logbroker/rpc"
)

// testHash is a bcrypt hash of "pw" at the minimum cost, made once.
var testHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

func TestParseUsers(t *testing.T) {
	h := testHash
	ok := []struct {
		name string
		file string
		want map[string]rpc.Role
	}{
		{"YAMLFlow", "users:\n  device_123: {password: \"" + h + "\", role: device}\n  dash: {password: \"" + h + "\", role: reader}\n  ops: {password: \"" + h + "\", role: admin}\n",
			map[string]rpc.Role{"device_123": rpc.RoleDevice, "dash": rpc.RoleReader, "ops": rpc.RoleAdmin}},
		{"YAMLBlock", "# fleet\nusers:\n  dev1:\n    password: '" + h + "'\n    role: device\n",
			map[string]rpc.Role{"dev1": rpc.RoleDevice}},
		{"JSON", `{"users": {"dev1": {"password": "` + h + `", "role": "device"}, "ops": {"role": "admin", "password": "` + h + `"}}}`,
			map[string]rpc.Role{"dev1": rpc.RoleDevice, "ops": rpc.RoleAdmin}},
		{"UnicodeName", "users:\n  capteur-é: {password: \"" + h + "\", role: device}\n",
			map[string]rpc.Role{"capteur-é": rpc.RoleDevice}},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			users, err := ParseUsers([]byte(c.file))
			if err != nil {
				t.Fatalf("ParseUsers: %v", err)
			}
			if len(users) != len(c.want) {
				t.Fatalf("got %d users %v, want %d", len(users), users, len(c.want))
			}
			for name, role := range c.want {
				u, ok := users[name]
				if !ok {
					t.Fatalf("user %q missing", name)
				}
				if u.Name != name || u.Role != role {
					t.Errorf("user %q = {%q, %v}, want role %v", name, u.Name, u.Role, role)
				}
				if bcrypt.CompareHashAndPassword(u.Hash, []byte("pw")) != nil {
					t.Errorf("user %q: hash does not accept its password", name)
				}
			}
		})
	}

	bad := []struct {
		name string
		file string
		want []string // substrings of the error
	}{
		{"Empty", "", []string{"empty file"}},
		{"NotYAML", "users: [unclosed", []string{"bad users file"}},
		{"NoUsersKey", "accounts:\n  dev1: {password: x, role: device}\n", []string{"accounts"}},
		{"UsersNotAMap", "users: [dev1, dev2]\n", []string{"no users"}},
		{"NoUsers", "users: {}\n", []string{"no users"}},
		{"UnknownRole", "users:\n  dev1: {password: \"" + h + "\", role: device}\n  bob: {password: \"" + h + "\", role: superuser}\n", []string{`user "bob"`, `unknown role "superuser"`}},
		{"RoleCase", "users:\n  bob: {password: \"" + h + "\", role: Admin}\n", []string{`user "bob"`, `unknown role "Admin"`}},
		{"NoRole", "users:\n  bob: {password: \"" + h + "\"}\n", []string{`user "bob"`, "no role"}},
		{"PlainPassword", "users:\n  dev1: {password: \"" + h + "\", role: device}\n  alice: {password: hunter2, role: reader}\n", []string{`user "alice"`, "not a bcrypt hash", "logbroker passwd"}},
		{"TruncatedHash", "users:\n  alice: {password: \"" + h[:30] + "\", role: reader}\n", []string{`user "alice"`, "not a bcrypt hash"}},
		{"NoPassword", "users:\n  alice: {role: reader}\n", []string{`user "alice"`, "no password"}},
		{"UnknownField", "users:\n  alice: {password: \"" + h + "\", role: reader, admin: true}\n", []string{`user "alice"`, `unknown field "admin"`}},
		{"UserNotAMap", "users:\n  alice: reader\n", []string{`user "alice"`, "want {password"}},
		{"PasswordNotString", "users:\n  alice: {password: [a, b], role: reader}\n", []string{`user "alice"`, "password must be a string"}},
		{"Duplicate", "users:\n  alice: {password: \"" + h + "\", role: reader}\n  alice: {password: \"" + h + "\", role: admin}\n", []string{`user "alice"`}},
		{"NameWithSlash", "users:\n  a/b: {password: \"" + h + "\", role: device}\n", []string{`user "a/b"`, "'/'"}},
		{"NameWithPlus", "users:\n  a+b: {password: \"" + h + "\", role: device}\n", []string{`user "a+b"`}},
		{"NameWithHash", "users:\n  \"a#\": {password: \"" + h + "\", role: device}\n", []string{`user "a#"`}},
		{"NameDollar", "users:\n  $sys: {password: \"" + h + "\", role: admin}\n", []string{`user "$sys"`, "'$'"}},
		{"EmptyName", "users:\n  \"\": {password: \"" + h + "\", role: admin}\n", []string{`user ""`, "empty"}},
		{"UnknownTopLevel", "users:\n  alice: {password: \"" + h + "\", role: reader}\nadmins: [alice]\n", []string{"admins"}},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			users, err := ParseUsers([]byte(c.file))
			if err == nil {
				t.Fatalf("ParseUsers accepted it: %v", users)
			}
			if !errors.Is(err, ErrUsers) {
				t.Errorf("error %v does not wrap ErrUsers", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadUsers(t *testing.T) {
	t.Run("Missing", func(t *testing.T) {
		_, err := LoadUsers(filepath.Join(t.TempDir(), "nope.yaml"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("got %v, want a not-exist error", err)
		}
	})
	t.Run("NamesTheFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "users.yaml")
		if err := os.WriteFile(path, []byte("users:\n  bob: {password: x, role: admin}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := LoadUsers(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `user "bob"`) {
			t.Fatalf("got %v, want an error naming %s and bob", err, path)
		}
	})
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword([]byte("correct horse"))
	if err != nil {
		t.Fatal(err)
	}
	users, err := ParseUsers([]byte("users:\n  u: {password: \"" + h + "\", role: reader}\n"))
	if err != nil {
		t.Fatalf("a HashPassword hash is refused by ParseUsers: %v", err)
	}
	if bcrypt.CompareHashAndPassword(users["u"].Hash, []byte("correct horse")) != nil {
		t.Error("hash does not accept its password")
	}
	if bcrypt.CompareHashAndPassword(users["u"].Hash, []byte("correct horsE")) == nil {
		t.Error("hash accepts another password")
	}
}
