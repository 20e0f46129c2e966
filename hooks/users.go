package hooks

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"

	"github.com/logbroker/logbroker/rpc"
)

// ErrUsers is wrapped by every error about the users file.
var ErrUsers = errors.New("bad users file")

// User is one account of the users file.
type User struct {
	Name string
	Hash []byte // bcrypt
	Role rpc.Role
}

// Users is a parsed users file, by name.
type Users map[string]User

// usersFile is the YAML (or JSON) layout of --auth FILE:
//
//	users:
//	  device_123: {password: "$2a$10$...", role: device}
type usersFile struct {
	Users map[string]struct {
		Password string `yaml:"password"`
		Role     string `yaml:"role"`
	} `yaml:"users"`
}

// LoadUsers reads and checks a users file.
func LoadUsers(path string) (Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load users: %w", err)
	}
	u, err := ParseUsers(data)
	if err != nil {
		return nil, fmt.Errorf("load users %s: %w", path, err)
	}
	return u, nil
}

// ParseUsers checks every account and reports the first problem by user
// name: a bad name, an unknown role, a password that is not a bcrypt hash.
func ParseUsers(data []byte) (Users, error) {
	var f usersFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUsers, err)
	}
	if len(f.Users) == 0 {
		return nil, fmt.Errorf("%w: no users (want a top-level \"users:\" map)", ErrUsers)
	}
	names := make([]string, 0, len(f.Users))
	for n := range f.Users {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make(Users, len(names))
	for _, name := range names {
		u := f.Users[name]
		if err := validUserName(name); err != nil {
			return nil, fmt.Errorf("%w: user %q: %v", ErrUsers, name, err)
		}
		role, ok := rpc.ParseRole(u.Role)
		if !ok {
			return nil, fmt.Errorf("%w: user %q: unknown role %q (want device, reader or admin)", ErrUsers, name, u.Role)
		}
		if _, err := bcrypt.Cost([]byte(u.Password)); err != nil {
			return nil, fmt.Errorf("%w: user %q: password is not a bcrypt hash (make one with: logbroker passwd)", ErrUsers, name)
		}
		out[name] = User{Name: name, Hash: []byte(u.Password), Role: role}
	}
	return out, nil
}

// validUserName: a user name is an identity and a topic level, so it has no
// '/', '+', '#', NUL and does not start with '$'.
func validUserName(name string) error {
	if err := rpc.ValidSrc(name); err != nil {
		return err
	}
	if strings.Contains(name, "/") {
		return errors.New("name contains '/'")
	}
	return nil
}

// HashPassword makes the bcrypt hash that a users file holds.
func HashPassword(password []byte) (string, error) {
	h, err := bcrypt.GenerateFromPassword(password, bcrypt.DefaultCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}
