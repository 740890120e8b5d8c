package httpbody

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestJSON(t *testing.T) {
	type body struct {
		Name string `json:"name"`
	}
	for _, tc := range []struct {
		in           string
		strict, open string // "" accepted, else a word of the error
	}{
		{in: `{"name":"a"}`},
		{in: " {\"name\":\"a\"} \n\t"},
		{in: ``, strict: "empty", open: "empty"},
		{in: "  \n", strict: "empty", open: "empty"},
		{in: `{"name":"a","extra":1}`, strict: "unknown field"},
		{in: `{"name":"a"}}`, strict: "after the JSON object", open: "after the JSON object"},
		{in: `{"name":"a"}]`, strict: "after the JSON object", open: "after the JSON object"},
		{in: `{"name":"a"} {"name":"b"}`, strict: "after the JSON object", open: "after the JSON object"},
		{in: `{"name":"a"} x`, strict: "after the JSON object", open: "after the JSON object"},
		{in: `{"name":`, strict: "unexpected EOF", open: "unexpected EOF"},
		{in: `{"name":"` + strings.Repeat("a", 100) + `"}`, strict: "too large", open: "too large"},
	} {
		for _, mode := range []struct {
			name string
			read func(http.ResponseWriter, *http.Request, int64, any) error
			want string
		}{{"JSON", JSON, tc.strict}, {"JSONAllowUnknown", JSONAllowUnknown, tc.open}} {
			var v body
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.in))
			err := mode.read(httptest.NewRecorder(), r, 64, &v)
			switch {
			case mode.want == "" && err != nil:
				t.Errorf("%s(%q): %v", mode.name, tc.in, err)
			case mode.want == "" && v.Name != "a":
				t.Errorf("%s(%q): name %q", mode.name, tc.in, v.Name)
			case mode.want != "" && (err == nil || !strings.Contains(err.Error(), mode.want)):
				t.Errorf("%s(%q): %v, want an error saying %q", mode.name, tc.in, err, mode.want)
			}
			if mode.want == "empty" && !errors.Is(err, ErrEmpty) {
				t.Errorf("%s(%q): %v is not ErrEmpty", mode.name, tc.in, err)
			}
		}
	}
}
