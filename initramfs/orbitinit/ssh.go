package orbitinit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/orbit-lab/netboot/initramfs/layout"
)

// The debug shell: u-root's sshd with gosh, started only with a key.
//
// Keys come from the image (layout.AuthorizedKeys, nbctl image build
// --ssh-key) and from the kernel command line, one key per orbit.sshkey=
// argument (several arguments add several keys), in one of two forms:
//
//	orbit.sshkey=AAAAC3NzaC1lZDI1NTE5AAAAI...          the key's base64 blob alone
//	orbit.sshkey="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5..."  a whole authorized_keys line, quoted
//
// The blob alone needs no quoting (the key type is inside it); it is the
// second field of a .pub file. '+' cannot stand for a space: base64 uses it.
// authorized_keys options (from=, command=, ...) are not accepted.
//
// This package checks the form and the key type only (the init does not
// link an SSH implementation); sshd parses the keys fully and, should one be
// malformed, exits with the error on the console.

// Service is a long-running program that the init starts and restarts.
type Service struct {
	Name string   // for the log: "sshd"
	Path string   // absolute
	Args []string // without argv[0]
	Env  []string
}

// SSHKeyArg is the kernel command line key of a debug shell key.
const SSHKeyArg = "orbit.sshkey"

// ErrBadSSHKey is returned (wrapped) for an orbit.sshkey= value that is not
// an SSH public key.
var ErrBadSSHKey = errors.New("bad ssh key")

// sshKeyTypes are the public key types sshd (x/crypto/ssh) accepts.
var sshKeyTypes = map[string]bool{
	"ssh-ed25519":                        true,
	"ssh-rsa":                            true,
	"ecdsa-sha2-nistp256":                true,
	"ecdsa-sha2-nistp384":                true,
	"ecdsa-sha2-nistp521":                true,
	"sk-ssh-ed25519@openssh.com":         true,
	"sk-ecdsa-sha2-nistp256@openssh.com": true,
}

// ParseSSHKeyArg checks the value of an orbit.sshkey= argument and returns
// it as an authorized_keys line (without a newline): "<type> <blob>
// [comment]". The comment, if any, is kept; the blob's type must be known
// and agree with the line's.
func ParseSSHKeyArg(v string) (string, error) {
	fields := strings.Fields(v)
	var typ, blob, comment string
	switch len(fields) {
	case 0:
		return "", fmt.Errorf("%w: empty", ErrBadSSHKey)
	case 1:
		blob = fields[0]
	default:
		typ, blob = fields[0], fields[1]
		comment = strings.Join(fields[2:], " ")
	}
	raw, err := base64.StdEncoding.DecodeString(blob)
	if err != nil {
		return "", fmt.Errorf("%w %.20q...: not base64: %w", ErrBadSSHKey, blob, err)
	}
	// The wire format starts with the type as an SSH string.
	if len(raw) < 4 || uint32(len(raw)-4) < binary.BigEndian.Uint32(raw) {
		return "", fmt.Errorf("%w %.20q...: too short", ErrBadSSHKey, blob)
	}
	blobType := string(raw[4 : 4+binary.BigEndian.Uint32(raw)])
	if !sshKeyTypes[blobType] {
		return "", fmt.Errorf("%w %.20q...: key type %q not supported", ErrBadSSHKey, blob, blobType)
	}
	if typ != "" && typ != blobType {
		return "", fmt.Errorf("%w: type %q but the key is %q", ErrBadSSHKey, typ, blobType)
	}
	line := blobType + " " + blob
	if comment != "" {
		line += " " + comment
	}
	return line, nil
}

// sshKeys returns the authorized_keys file to serve: the image's file, then
// one line per valid orbit.sshkey= argument. Invalid arguments are returned
// as errors (and skipped).
func sshKeys(image []byte, c Cmdline) ([]byte, error) {
	var (
		b    bytes.Buffer
		errs []error
	)
	if len(bytes.TrimSpace(image)) > 0 {
		b.Write(image)
		if !bytes.HasSuffix(image, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	for _, v := range c.GetAll(SSHKeyArg) {
		line, err := ParseSSHKeyArg(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=: %w", SSHKeyArg, err))
			continue
		}
		b.WriteString(line + "\n")
	}
	return b.Bytes(), errors.Join(errs...)
}

// ed25519PKCS8Prefix is the DER of a PKCS#8 ed25519 private key (RFC 8410)
// up to its 32-byte seed: what x509.MarshalPKCS8PrivateKey writes, without
// linking crypto/x509 into the init.
var ed25519PKCS8Prefix = []byte{0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20}

// newHostKey returns a new ed25519 host key as a PKCS#8 PEM ("PRIVATE
// KEY", which sshd's ssh.ParsePrivateKey reads) and its public key.
func newHostKey() (pemBytes []byte, pub ed25519.PublicKey, err error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, nil, err
	}
	priv := ed25519.NewKeyFromSeed(seed)
	der := append(append([]byte{}, ed25519PKCS8Prefix...), seed...)
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), priv.Public().(ed25519.PublicKey), nil
}

// sshFingerprint is OpenSSH's SHA256 fingerprint of an ed25519 public key,
// as ssh-keygen -l prints it: "SHA256:<unpadded base64>".
func sshFingerprint(pub ed25519.PublicKey) string {
	var wire []byte
	for _, s := range [][]byte{[]byte("ssh-ed25519"), pub} {
		wire = binary.BigEndian.AppendUint32(wire, uint32(len(s)))
		wire = append(wire, s...)
	}
	sum := sha256.Sum256(wire)
	return "SHA256:" + base64.RawStdEncoding.EncodeToString(sum[:])
}

// SSHDArgs are the flags of u-root's sshd (cmds/core/sshd) for the files of
// package layout: public keys from SSHAuthorizedKeys only (it has no
// password or keyboard-interactive authentication and rejects "none"), the
// host key, every address, port 22. Sessions run /bin/sh (gosh).
var SSHDArgs = []string{
	"-keys", layout.SSHAuthorizedKeys,
	"-privatekey", layout.SSHHostKey,
	"-ip", "0.0.0.0", // Go listens on both IPv4 and IPv6 for a wildcard
	"-port", layout.SSHPort,
}

// startSSHD starts the debug shell when there is a key: it writes the keys
// to SSHAuthorizedKeys, a new host key to SSHHostKey (printing its
// fingerprint on the console) and has Node.Start run sshd. Without a key it
// logs that there is no debug shell. A key but no sshd in the image is an
// error.
func (n *Node) startSSHD(context.Context) error {
	image, err := os.ReadFile(layout.AuthorizedKeys)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	keys, keyErr := sshKeys(image, n.Cmdline)
	if len(keys) == 0 {
		n.Log.Info("no ssh debug shell: no key (nbctl image build --ssh-key, or orbit.sshkey= on the kernel command line)")
		return keyErr
	}
	if _, err := os.Stat(layout.SSHD); err != nil {
		return errors.Join(keyErr, fmt.Errorf("ssh key given but the image has no debug shell (build with --ssh-key): %w", err))
	}
	if err := os.MkdirAll(filepath.Dir(layout.SSHAuthorizedKeys), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(layout.SSHAuthorizedKeys, keys, 0o600); err != nil {
		return err
	}
	hostKey, pub, err := newHostKey()
	if err != nil {
		return fmt.Errorf("ssh host key: %w", err)
	}
	if err := os.WriteFile(layout.SSHHostKey, hostKey, 0o600); err != nil {
		return err
	}
	fp := sshFingerprint(pub)
	n.Console("ssh host key: ED25519 " + fp)
	n.Log.Info("ssh debug shell", "port", layout.SSHPort, "keys", bytes.Count(keys, []byte("\n")), "host_key", fp)
	if n.Start == nil {
		return errors.Join(keyErr, errors.New("no service starter: sshd not started"))
	}
	n.Start(Service{
		Name: "sshd",
		Path: layout.SSHD,
		Args: SSHDArgs,
		Env:  []string{"PATH=/bin:/sbin", "HOME=/root", "TERM=linux", "SHELL=" + layout.Sh},
	})
	return keyErr
}
