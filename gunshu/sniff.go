package gunshu

// Sniff is the verdict of SniffCommand on the first bytes of a connection.
type Sniff int

// Verdicts of SniffCommand.
const (
	// SniffNo: the bytes cannot start an accepted command.
	SniffNo Sniff = iota
	// SniffMore: the bytes so far are the start of an accepted command
	// line; more are needed to decide.
	SniffMore
	// SniffYes: the bytes start with a whole accepted command line.
	SniffYes
)

// FirstCommands are the commands a connection can open with.
var FirstCommands = []string{CmdReg, CmdTest, CmdList, CmdEst}

// SniffCommand tells whether b, the first bytes a peer sent, open with a
// command line naming one of commands (FirstCommands when empty), as
// readLine would read it: blanks around the command and one "\r" before
// the "\n" are tolerated. It answers SniffNo at the first byte that rules
// every command out, so foreign protocols are recognised at once, and it
// returns the command on SniffYes.
func SniffCommand(b []byte, commands []string) (string, Sniff) {
	if len(commands) == 0 {
		commands = FirstCommands
	}
	i := 0
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	start := i
	for i < len(b) && !isBlank(b[i]) && b[i] != '\r' && b[i] != '\n' {
		i++
	}
	word := b[start:i]
	if i > DefaultMaxLine || !prefixOfAny(word, commands) {
		return "", SniffNo
	}
	if i == len(b) {
		return "", SniffMore
	}
	cmd := matchWhole(word, commands)
	if cmd == "" {
		return "", SniffNo
	}
	// Only blanks and one "\r" may follow the command before "\n".
	sawCR := false
	for ; i < len(b) && i <= DefaultMaxLine; i++ {
		switch c := b[i]; {
		case c == '\n':
			return cmd, SniffYes
		case c == '\r' && !sawCR:
			sawCR = true
		case isBlank(c) && !sawCR:
		default:
			return "", SniffNo
		}
	}
	if i > DefaultMaxLine {
		return "", SniffNo
	}
	return "", SniffMore
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func prefixOfAny(word []byte, commands []string) bool {
	for _, c := range commands {
		if len(word) <= len(c) && c[:len(word)] == string(word) {
			return true
		}
	}
	return false
}

func matchWhole(word []byte, commands []string) string {
	for _, c := range commands {
		if c == string(word) {
			return c
		}
	}
	return ""
}
