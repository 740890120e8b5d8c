package apitoken

import (
	"net/http"
	"testing"
)

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

func TestBearer(t *testing.T) {
	for _, tc := range []struct {
		header, want string
		ok           bool
	}{
		{"Bearer nbt_abc", "nbt_abc", true},
		{"bearer nbt_abc", "nbt_abc", true},
		{"BEARER  0123abcd ", "0123abcd", true},
		{"Bearer ", "", false},
		{"Bearer", "", false},
		{"Basic dXNlcjpwYXNz", "", false},
		{"Bearernbt_abc", "", false},
		{"", "", false},
	} {
		r := &http.Request{Header: http.Header{}}
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got, ok := Bearer(r); got != tc.want || ok != tc.ok {
			t.Errorf("Bearer(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.ok)
		}
	}
}
