package apitoken

import "testing"

func TestNew(t *testing.T) {
	a, ha, err := New()
	if err != nil {
		t.Fatal(err)
	}
	b, hb, err := New()
	if err != nil {
		t.Fatal(err)
	}
	if a == b || ha == hb {
		t.Fatalf("two tokens alike: %q %q", a, b)
	}
	if !Is(a) || len(a) != len(Prefix)+43 {
		t.Errorf("token %q: want %s and 43 base64url characters", a, Prefix)
	}
	if Hash(a) != ha || len(ha) != 64 {
		t.Errorf("Hash(%q) = %q, New said %q", a, Hash(a), ha)
	}
	if Is("0123abcd") {
		t.Error("an RC bearer (hex) taken for an API token")
	}
}
