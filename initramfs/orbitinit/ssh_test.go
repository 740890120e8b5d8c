package orbitinit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
)

// testKey returns a new ed25519 public key: its blob (base64) and its
// authorized_keys line without a comment.
func testKey(t *testing.T) (blob, line string) {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spub)))
	return base64.StdEncoding.EncodeToString(spub.Marshal()), line
}

func TestParseSSHKeyArg(t *testing.T) {
	blob, line := testKey(t)
	// A blob whose type is unknown, and one whose length prefix overruns.
	unknown := base64.StdEncoding.EncodeToString([]byte("\x00\x00\x00\x07ssh-dss\x00\x00\x00\x01x"))
	overrun := base64.StdEncoding.EncodeToString([]byte("\x00\x00\x01\x00ssh-ed25519"))
	for _, tt := range []struct {
		name string
		in   string // the cmdline value, quotes already removed
		want string // "" for an error
	}{
		{"blob alone", blob, line},
		{"whole line", line, line},
		{"whole line with comment", line + " root@console  lab", line + " root@console lab"},
		{"white space around", "  " + blob + "\t", line},
		{"empty", "", ""},
		{"plus for spaces", strings.ReplaceAll(line, " ", "+"), ""}, // base64 has '+': not a form
		{"type mismatch", "ssh-rsa " + blob, ""},
		{"not base64", "ssh-ed25519 !!!", ""},
		{"unknown type", unknown, ""},
		{"length overrun", overrun, ""},
		{"too short", "AAA=", ""},
		{"options", `from="10.0.0.1" ` + line, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSSHKeyArg(tt.in)
			if tt.want == "" {
				if !errors.Is(err, ErrBadSSHKey) {
					t.Errorf("ParseSSHKeyArg(%q) = %q, %v; want ErrBadSSHKey", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			// sshd (x/crypto/ssh) must read what we write.
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(got)); err != nil {
				t.Errorf("ssh.ParseAuthorizedKey(%q): %v", got, err)
			}
		})
	}
}

func TestSSHKeys(t *testing.T) {
	blob, line := testKey(t)
	_, line2 := testKey(t)
	for _, tt := range []struct {
		name    string
		image   string
		cmdline string
		want    string
		wantErr bool
	}{
		{"none", "", "quiet", "", false},
		{"image only, no newline", line2, "", line2 + "\n", false},
		{"blank image file", "\n \n", "", "", false},
		{"cmdline only", "", "orbit.sshkey=" + blob, line + "\n", false},
		{"both", line2 + "\n", `orbit.sshkey="` + line + ` me"`, line2 + "\n" + line + " me\n", false},
		{"a bad one is skipped", "", "orbit.sshkey=junk orbit.sshkey=" + blob, line + "\n", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := sshKeys([]byte(tt.image), ParseCmdline(tt.cmdline))
			if (err != nil) != tt.wantErr {
				t.Errorf("err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, string(got)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewHostKey(t *testing.T) {
	pemBytes, pub, err := newHostKey()
	if err != nil {
		t.Fatal(err)
	}
	// What x509 would have written, and what sshd reads.
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("not a PRIVATE KEY PEM:\n%s", pemBytes)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !k.(ed25519.PrivateKey).Public().(ed25519.PublicKey).Equal(pub) {
		t.Error("public key does not match the private key")
	}
	signer, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil {
		t.Fatalf("ssh.ParsePrivateKey: %v", err)
	}
	if got, want := sshFingerprint(pub), ssh.FingerprintSHA256(signer.PublicKey()); got != want {
		t.Errorf("fingerprint %s, want %s", got, want)
	}
}
