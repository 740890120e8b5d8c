// Package mcast is the wire format of multicast image distribution: the
// datagrams an appliance's sender (am/mcastsend) sends to a multicast
// group, and the reports receivers (rc/mcastrecv) send back to the
// sender's unicast address. Both sides import it; it imports nothing of
// the module.
//
// # Model
//
// A session distributes "frames", opaque byte strings numbered by chunk
// index 0..Chunks-1 (for a chunked image: one zstd frame per non-zero
// chunk). The sender sends in rounds. A round announces itself (CONTROL,
// phase start), sends every frame, or every fragment of a frame, that some
// receiver reported missing, and ends (CONTROL, phase end). Receivers
// report what they still miss (STATUS) every ~200 ms and as soon as a
// round ends; the next round sends the union of the latest reports. A
// receiver that joins late reports and is served in the next round. A
// receiver that has everything reports done; one that gives up on
// multicast (no datagram arrives) reports leave. The sender serves and
// waits for only the receivers whose reports say they hear the group: a
// receiver that multicast does not reach would otherwise have every round
// resend all it misses. The sender announces the end of the session
// (CONTROL, phase finish). While no round runs it sends CONTROL idle
// heartbeats, so a receiver can tell a working multicast path from a
// broken one, and repeats a round's end while it waits for reports.
//
// Lost DATA is repaired at the fragment level: a receiver keeps the
// fragments it got of a frame across rounds and reports the missing ones
// (fragment entries), so 5% loss costs about 5% more, not whole frames.
//
// # Datagrams
//
// All integers are big-endian. Every datagram is at most MaxDatagram
// (1472) bytes: an IPv4 UDP payload in a 1500-byte Ethernet MTU. A sender
// on a smaller MTU picks a smaller fragment size (a DATA datagram is the
// fragment size plus 52 bytes).
//
// Header, every type:
//
//	offset size field
//	0      4    magic "NBMC"
//	4      1    version, 1
//	5      1    type: 1 DATA, 2 CONTROL, 3 STATUS
//	6      2    reserved, 0
//	8      8    session id
//	16     -    body (by type, below)
//	n-16   16   MAC: HMAC-SHA256(session key, bytes 0..n-16), first 16 bytes
//
// DATA (sender to group): one fragment of a frame.
//
//	16     4    round
//	20     4    chunk index, < the session's chunk count
//	24     4    frame size in bytes, >= 1
//	28     4    offset of this fragment in the frame, a multiple of the fragment size
//	32     2    fragment size: the payload length of every fragment but a frame's last, >= 1
//	34     2    reserved, 0
//	36     -    payload: min(fragment size, frame size - offset) bytes
//
// Fragment k of a frame starts at offset k*fragment size; a frame of S
// bytes has ceil(S/fragment size) fragments. The fragment size is the
// same for the whole session.
//
// CONTROL (sender to group): round and session announcements.
//
//	16     4    round (0 before the first)
//	20     4    chunk count of the session
//	24     4    frames the round sends (phase start), else 0
//	28     1    phase: 1 round start, 2 round end, 3 idle (heartbeat), 4 finish (session over)
//	29     3    reserved, 0
//
// STATUS (receiver to the sender's unicast address): what the receiver
// still misses. One report may span several datagrams (parts) with the
// same sequence number; the sender uses a report once all its parts have
// arrived, and a newer report replaces an older one.
//
//	16     4    sequence number of the report, increasing per receiver
//	20     4    round: the last round whose end the receiver saw (0 none)
//	24     4    chunk count the receiver expects (must equal the session's)
//	28     4    missing: chunks the whole report says are missing
//	32     2    part index, < parts
//	34     2    parts, >= 1
//	36     1    flags: 1 done (nothing missing), 2 leave (gives up on multicast),
//	            4 hears (a valid datagram of the session has reached the receiver)
//	37     1    receiver id length L, 1..64
//	38     L    receiver id (e.g. the node's name)
//	38+L   -    entries, each starting with its kind byte:
//
//	kind size       entry
//	1    9          chunk range: start (4), count (4, >= 1): chunks start..start+count-1 missing whole
//	2    7+N        chunk bitmap: start (4), N (2, >= 1), N bytes: bit k (MSB first) set: chunk start+k missing whole
//	3    11+N       fragment bitmap: chunk (4), first (4), N (2, >= 1), N bytes: bit k set: fragment first+k of chunk missing
//	4    13         fragment range: chunk (4), first (4), count (4, >= 1): fragments first..first+count-1 of chunk missing
//
// A chunk is missing whole when the receiver holds none of it; fragment
// entries name what it lacks of a frame it holds a part of. The encoder
// picks ranges or bitmaps, whichever is shorter.
//
// # Authentication
//
// The per-session key (32 random bytes, delivered inside the LOAD command
// the appliance signs) authenticates every datagram: Parse checks the
// session id and then the MAC before it reads the body, so a datagram from
// another session or from anyone without the key is rejected, each with
// its own error, before anything of it is used. Every member of a session
// holds the same key: a member could forge DATA for the others, which is
// why a receiver still checks each frame against the chunk's SHA-256 from
// the signed manifest before it writes it.
package mcast
