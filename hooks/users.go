package hooks

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
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
//
// Each account is kept as a node so that a problem in it is reported with
// the user's name.
type usersFile struct {
	Users yaml.Node `yaml:"users"`
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
// name: a bad name, a duplicate, an unknown field, an unknown role, a
// password that is not a bcrypt hash.
func ParseUsers(data []byte) (Users, error) {
	var f usersFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty file (want a top-level \"users:\" map)", ErrUsers)
		}
		return nil, fmt.Errorf("%w: %v", ErrUsers, err)
	}
	if f.Users.Kind != yaml.MappingNode || len(f.Users.Content) == 0 {
		return nil, fmt.Errorf("%w: no users (want a top-level \"users:\" map of name: {password, role})", ErrUsers)
	}
	out := make(Users, len(f.Users.Content)/2)
	for i := 0; i+1 < len(f.Users.Content); i += 2 {
		k, v := f.Users.Content[i], f.Users.Content[i+1]
		name := k.Value
		u, err := parseUser(name, v)
		if err == nil {
			if _, dup := out[name]; dup {
				err = errors.New("defined twice")
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: user %q: %v", ErrUsers, k.Line, name, err)
		}
		out[name] = u
	}
	return out, nil
}

// parseUser checks one account: {password: <bcrypt hash>, role: <role>}.
func parseUser(name string, n *yaml.Node) (User, error) {
	if err := validUserName(name); err != nil {
		return User{}, err
	}
	if n.Kind != yaml.MappingNode {
		return User{}, errors.New("want {password: <bcrypt hash>, role: device|reader|admin}")
	}
	var password, role *string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var dst **string
		switch k.Value {
		case "password":
			dst = &password
		case "role":
			dst = &role
		default:
			return User{}, fmt.Errorf("unknown field %q (want password and role)", k.Value)
		}
		if *dst != nil {
			return User{}, fmt.Errorf("%s given twice", k.Value)
		}
		if v.Kind != yaml.ScalarNode {
			return User{}, fmt.Errorf("%s must be a string", k.Value)
		}
		*dst = &v.Value
	}
	if role == nil {
		return User{}, errors.New("no role (want device, reader or admin)")
	}
	r, ok := rpc.ParseRole(*role)
	if !ok {
		return User{}, fmt.Errorf("unknown role %q (want device, reader or admin)", *role)
	}
	if password == nil {
		return User{}, errors.New("no password (make a hash with: logbroker passwd)")
	}
	if _, err := bcrypt.Cost([]byte(*password)); err != nil {
		return User{}, errors.New("password is not a bcrypt hash (plain-text passwords are refused; make a hash with: logbroker passwd)")
	}
	return User{Name: name, Hash: []byte(*password), Role: r}, nil
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
