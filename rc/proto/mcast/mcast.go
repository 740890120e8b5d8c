package mcast

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"net"
)

// Wire constants (see the package doc).
const (
	Magic   = "NBMC"
	Version = 1
	// MaxDatagram is the largest datagram either side sends or accepts:
	// the UDP payload of a 1500-byte IPv4 packet.
	MaxDatagram = 1472
	// MACSize is the length of the truncated HMAC-SHA256 ending every datagram.
	MACSize = 16
	// KeySize is the length of a session key.
	KeySize = 32
	// MaxIDLen is the longest receiver id.
	MaxIDLen = 64

	headerSize  = 16
	dataHeader  = headerSize + 20
	controlSize = headerSize + 16 + MACSize
	statusFixed = headerSize + 22
	// MaxPayload is the most frame bytes one DATA datagram carries.
	MaxPayload  = MaxDatagram - dataHeader - MACSize
	minDatagram = headerSize + MACSize
)

// Type is a datagram's type.
type Type uint8

// The datagram types.
const (
	TypeData    Type = 1
	TypeControl Type = 2
	TypeStatus  Type = 3
)

func (t Type) String() string {
	switch t {
	case TypeData:
		return "DATA"
	case TypeControl:
		return "CONTROL"
	case TypeStatus:
		return "STATUS"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Phase is what a CONTROL datagram announces.
type Phase uint8

// The CONTROL phases.
const (
	PhaseStart  Phase = 1 // a round starts
	PhaseEnd    Phase = 2 // a round has ended: report now
	PhaseIdle   Phase = 3 // nothing to send: a heartbeat
	PhaseFinish Phase = 4 // the session is over
)

// Parse's errors, one per way a datagram is refused; the caller counts
// them (errors.Is).
var (
	ErrLength    = errors.New("mcast: datagram too short or too long")
	ErrMagic     = errors.New("mcast: bad magic")
	ErrVersion   = errors.New("mcast: unknown version")
	ErrSession   = errors.New("mcast: another session")
	ErrMAC       = errors.New("mcast: bad MAC")
	ErrType      = errors.New("mcast: unknown type")
	ErrMalformed = errors.New("mcast: malformed body")
)

// Message is a parsed datagram: *Data, *Control or *Status.
type Message interface{ Type() Type }

// Data is one fragment of frame Chunk.
type Data struct {
	Round     uint32
	Chunk     uint32
	FrameSize uint32
	Offset    uint32
	FragSize  uint16
	// Payload aliases the parsed datagram.
	Payload []byte
}

// Type is TypeData.
func (*Data) Type() Type { return TypeData }

// Control announces a round's start or end, an idle sender, or the end of
// the session.
type Control struct {
	Round  uint32
	Chunks uint32
	Frames uint32
	Phase  Phase
}

// Type is TypeControl.
func (*Control) Type() Type { return TypeControl }

// Codec builds and parses the datagrams of one session. It keeps a MAC
// state: it is not safe for concurrent use (give each goroutine its own).
type Codec struct {
	session uint64
	mac     hash.Hash
	sum     []byte
}

// NewCodec returns the codec of session with key (KeySize bytes).
func NewCodec(key []byte, session uint64) (*Codec, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("mcast: session key is %d bytes, want %d", len(key), KeySize)
	}
	return &Codec{session: session, mac: hmac.New(sha256.New, key), sum: make([]byte, 0, sha256.Size)}, nil
}

// Session is the codec's session id.
func (c *Codec) Session() uint64 { return c.session }

// appendHeader starts a datagram of type t.
func (c *Codec) appendHeader(dst []byte, t Type) []byte {
	dst = append(dst, Magic...)
	dst = append(dst, Version, byte(t), 0, 0)
	return binary.BigEndian.AppendUint64(dst, c.session)
}

// seal appends the MAC over dst[start:].
func (c *Codec) seal(dst []byte, start int) []byte {
	c.mac.Reset()
	c.mac.Write(dst[start:])
	c.sum = c.mac.Sum(c.sum[:0])
	return append(dst, c.sum[:MACSize]...)
}

// AppendData appends d as one DATA datagram. The caller keeps the limits
// Parse checks (payload at most MaxPayload, offset a multiple of FragSize).
func (c *Codec) AppendData(dst []byte, d *Data) []byte {
	start := len(dst)
	dst = c.appendHeader(dst, TypeData)
	dst = binary.BigEndian.AppendUint32(dst, d.Round)
	dst = binary.BigEndian.AppendUint32(dst, d.Chunk)
	dst = binary.BigEndian.AppendUint32(dst, d.FrameSize)
	dst = binary.BigEndian.AppendUint32(dst, d.Offset)
	dst = binary.BigEndian.AppendUint16(dst, d.FragSize)
	dst = append(dst, 0, 0)
	dst = append(dst, d.Payload...)
	return c.seal(dst, start)
}

// AppendControl appends m as one CONTROL datagram.
func (c *Codec) AppendControl(dst []byte, m *Control) []byte {
	start := len(dst)
	dst = c.appendHeader(dst, TypeControl)
	dst = binary.BigEndian.AppendUint32(dst, m.Round)
	dst = binary.BigEndian.AppendUint32(dst, m.Chunks)
	dst = binary.BigEndian.AppendUint32(dst, m.Frames)
	dst = append(dst, byte(m.Phase), 0, 0, 0)
	return c.seal(dst, start)
}

// Parse checks and decodes one datagram, in the order length, magic,
// version, session, MAC, type, body: nothing of a datagram that fails the
// MAC is looked at further. A Data's Payload aliases b.
func (c *Codec) Parse(b []byte) (Message, error) {
	if len(b) < minDatagram || len(b) > MaxDatagram {
		return nil, fmt.Errorf("%w: %d bytes", ErrLength, len(b))
	}
	if string(b[:4]) != Magic {
		return nil, ErrMagic
	}
	if b[4] != Version {
		return nil, fmt.Errorf("%w: %d", ErrVersion, b[4])
	}
	if s := binary.BigEndian.Uint64(b[8:16]); s != c.session {
		return nil, fmt.Errorf("%w: %#x", ErrSession, s)
	}
	body := b[:len(b)-MACSize]
	c.mac.Reset()
	c.mac.Write(body)
	c.sum = c.mac.Sum(c.sum[:0])
	if !hmac.Equal(c.sum[:MACSize], b[len(body):]) {
		return nil, ErrMAC
	}
	if b[6] != 0 || b[7] != 0 {
		return nil, fmt.Errorf("%w: reserved header bytes set", ErrMalformed)
	}
	var (
		m   Message
		err error
	)
	switch Type(b[5]) {
	case TypeData:
		m, err = parseData(body)
	case TypeControl:
		m, err = parseControl(body)
	case TypeStatus:
		m, err = parseStatus(body)
	default:
		return nil, fmt.Errorf("%w: %d", ErrType, b[5])
	}
	if err != nil {
		// Not a typed nil inside m.
		return nil, err
	}
	return m, nil
}

func parseData(b []byte) (*Data, error) {
	if len(b) < dataHeader {
		return nil, fmt.Errorf("%w: DATA of %d bytes", ErrMalformed, len(b)+MACSize)
	}
	d := &Data{
		Round:     binary.BigEndian.Uint32(b[16:]),
		Chunk:     binary.BigEndian.Uint32(b[20:]),
		FrameSize: binary.BigEndian.Uint32(b[24:]),
		Offset:    binary.BigEndian.Uint32(b[28:]),
		FragSize:  binary.BigEndian.Uint16(b[32:]),
		Payload:   b[dataHeader:],
	}
	switch {
	case b[34] != 0 || b[35] != 0:
		return nil, fmt.Errorf("%w: DATA reserved bytes set", ErrMalformed)
	case d.FrameSize == 0 || d.FragSize == 0:
		return nil, fmt.Errorf("%w: DATA frame size %d, fragment size %d", ErrMalformed, d.FrameSize, d.FragSize)
	case d.Offset >= d.FrameSize || d.Offset%uint32(d.FragSize) != 0:
		return nil, fmt.Errorf("%w: DATA offset %d in a frame of %d by %d", ErrMalformed, d.Offset, d.FrameSize, d.FragSize)
	case uint32(len(d.Payload)) != min(uint32(d.FragSize), d.FrameSize-d.Offset):
		return nil, fmt.Errorf("%w: DATA payload of %d bytes at %d of %d by %d", ErrMalformed, len(d.Payload), d.Offset, d.FrameSize, d.FragSize)
	}
	return d, nil
}

func parseControl(b []byte) (*Control, error) {
	if len(b) != controlSize-MACSize {
		return nil, fmt.Errorf("%w: CONTROL of %d bytes", ErrMalformed, len(b)+MACSize)
	}
	m := &Control{
		Round:  binary.BigEndian.Uint32(b[16:]),
		Chunks: binary.BigEndian.Uint32(b[20:]),
		Frames: binary.BigEndian.Uint32(b[24:]),
		Phase:  Phase(b[28]),
	}
	if m.Phase < PhaseStart || m.Phase > PhaseFinish || b[29] != 0 || b[30] != 0 || b[31] != 0 {
		return nil, fmt.Errorf("%w: CONTROL phase %d", ErrMalformed, m.Phase)
	}
	return m, nil
}

// ResolveGroup parses a session's group, an IPv4 multicast "ip:port".
func ResolveGroup(group string) (*net.UDPAddr, error) {
	a, err := net.ResolveUDPAddr("udp4", group)
	if err != nil {
		return nil, fmt.Errorf("group %q: %w", group, err)
	}
	if !a.IP.IsMulticast() || a.Port == 0 {
		return nil, fmt.Errorf("group %q: not a multicast ip:port", group)
	}
	return a, nil
}

// Fragments is how many fragments a frame of size bytes has.
func Fragments(size, fragSize int) int { return (size + fragSize - 1) / fragSize }
