// Package httpbody reads request bodies for the appliance's HTTP handlers:
// bounded, and strict about JSON, so a misspelt field is an error rather
// than silently ignored.
package httpbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// ErrEmpty is returned by JSON for a body with nothing in it.
var ErrEmpty = errors.New("request body: empty")

// JSON decodes the body of r, at most limit bytes, into v: unknown fields
// and data after the object are errors.
func JSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return ErrEmpty
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if dec.More() {
		return errors.New("request body: data after the JSON object")
	}
	return nil
}
