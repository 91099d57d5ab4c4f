package cluster

import "bytes"

// siteAndHost reads the site and host tags of one line of line protocol
// that ingest has already checked, without decoding the rest: the
// partition of a line is all an ingest replica needs of it. Escaped
// characters (\, \= \space) are kept out of the split and taken out of
// the values. A backslash escapes only a comma, an equals sign or a
// space, as the decoder reads it; before anything else it is itself.
func siteAndHost(line []byte, siteKey, hostKey string) (site, host string) {
	// The tag section ends at the first unescaped space.
	end := len(line)
	for i := 0; i < len(line); i++ {
		if escapes(line, i) {
			i++
			continue
		}
		if line[i] == ' ' {
			end = i
			break
		}
	}
	start := -1 // of the current tag, after its comma
	for i := 0; i <= end; i++ {
		if i < end && escapes(line, i) {
			i++
			continue
		}
		if i < end && line[i] != ',' {
			continue
		}
		if start >= 0 {
			k, v := splitTag(line[start:i])
			switch string(k) {
			case siteKey:
				site = unescape(v)
			case hostKey:
				host = unescape(v)
			}
		}
		start = i + 1
	}
	return site, host
}

func splitTag(tag []byte) (key, value []byte) {
	for i := 0; i < len(tag); i++ {
		if escapes(tag, i) {
			i++
			continue
		}
		if tag[i] == '=' {
			return tag[:i], tag[i+1:]
		}
	}
	return tag, nil
}

// escapes says whether b[i] is a backslash that escapes the next byte.
func escapes(b []byte, i int) bool {
	return b[i] == '\\' && i+1 < len(b) && (b[i+1] == ',' || b[i+1] == '=' || b[i+1] == ' ')
}

func unescape(v []byte) string {
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v)
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if escapes(v, i) {
			i++
		}
		out = append(out, v[i])
	}
	return string(out)
}
