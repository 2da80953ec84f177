package codec

// AppendAnnexBNALs appends the NAL units of an H.264 Annex-B buffer (without
// their start codes) to out and returns it; the units alias b. A 4-byte start
// code's leading zero and trailing zero bytes belong to no unit.
func AppendAnnexBNALs(out [][]byte, b []byte) [][]byte {
	start := -1
	i := 0
	for i+2 < len(b) {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				end := i
				for end > start && b[end-1] == 0 {
					end--
				}
				out = append(out, b[start:end])
			}
			i += 3
			start = i
			continue
		}
		i++
	}
	if start >= 0 && start < len(b) {
		out = append(out, b[start:])
	}
	return out
}
