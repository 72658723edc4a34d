package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/gunshu/caddy-gunshu/gunshu"
	"github.com/gunshu/caddy-gunshu/gunshu/redisregistry"
	"github.com/gunshu/caddy-gunshu/internal/testkit"
)

// The tests of this file keep the documentation true to the code: the
// module tables of README.md, xcaddy.md and docs/configuration.md list
// what the code registers (.ci/run then checks the built binary against
// README's table); docs/configuration.md documents every JSON field with
// the code's default, every Caddyfile option of the code's grammar
// comments and every flag of the command; every Caddyfile and JSON block
// of the docs adapts, decodes and validates; every relative link leads
// somewhere.

const modulePath = "github.com/gunshu/caddy-gunshu"

// docFiles are the documents whose examples and links are checked.
var docFiles = []string{"README.md", "xcaddy.md", "docs/configuration.md", "PRIVACY.md", "SECURITY.md", "PROTOCOL.md", "bench/README.md"}

// readDoc reads a document of the repository by its path from the root.
func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// registeredModules are the IDs of the modules this repository registers.
func registeredModules(t *testing.T) []string {
	t.Helper()
	var ids []string
	for _, id := range caddy.Modules() {
		info, err := caddy.GetModule(id)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(moduleType(info).PkgPath(), modulePath) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		t.Fatal("no module of this repository is registered")
	}
	return ids
}

func moduleType(info caddy.ModuleInfo) reflect.Type {
	typ := reflect.TypeOf(info.New())
	if typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	return typ
}

// section is the text from the heading line equal to heading (or, with
// prefix, starting with it) to the next heading of the same or a higher
// level; "" when there is none.
func section(doc, heading string, prefix bool) string {
	level := strings.Index(heading, " ")
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if l != heading && !(prefix && strings.HasPrefix(l, heading)) {
			continue
		}
		end := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if h := headingLevel(lines[j]); h > 0 && h <= level {
				end = j
				break
			}
		}
		return strings.Join(lines[i:end], "\n")
	}
	return ""
}

func headingLevel(line string) int {
	n := len(line) - len(strings.TrimLeft(line, "#"))
	if n > 0 && strings.HasPrefix(line[n:], " ") {
		return n
	}
	return 0
}

var tableRow = regexp.MustCompile("^\\| `([^`]+)` \\|(.*)$")

// tableRows maps the first cell of every table row of text that is one
// code span to the rest of the row's cells.
func tableRows(text string) map[string][]string {
	rows := map[string][]string{}
	for _, l := range strings.Split(text, "\n") {
		if m := tableRow.FindStringSubmatch(l); m != nil {
			rows[m[1]] = strings.Split(strings.TrimSuffix(m[2], "|"), " | ")
		}
	}
	return rows
}

var moduleID = regexp.MustCompile(`^[a-z0-9_.]+$`)

// moduleIDs are the first cells of the table rows of text that are module
// IDs (the rule .ci/run applies to README's table).
func moduleIDs(text string) []string {
	var ids []string
	for id := range tableRows(text) {
		if moduleID.MatchString(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

func TestModuleTablesListEveryRegisteredModule(t *testing.T) {
	want := registeredModules(t)
	readme := readDoc(t, "README.md")
	for _, table := range []struct{ doc, text string }{
		{"README.md, Modules", section(readme, "## Modules", false)},
		{"xcaddy.md", readDoc(t, "xcaddy.md")},
		{"docs/configuration.md, Module IDs", section(readDoc(t, "docs/configuration.md"), "## Module IDs", false)},
	} {
		if got := moduleIDs(table.text); !slices.Equal(got, want) {
			t.Errorf("%s lists the modules\n%s\nthe code registers\n%s", table.doc, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	count := regexp.MustCompile(`print the (\d+) IDs above`).FindStringSubmatch(readDoc(t, "xcaddy.md"))
	if count == nil || count[1] != strconv.Itoa(len(want)) {
		t.Errorf("xcaddy.md should say list-modules prints the %d IDs above, says %v", len(want), count)
	}
	// README's table is what .ci/run expects of the binary: it must not
	// be a list written out a second time.
	ci := readDoc(t, ".ci/run")
	if !strings.Contains(ci, `in_modules = ($0 == "## Modules")`) {
		t.Error(".ci/run no longer derives the expected modules from README.md's Modules table")
	}
	for _, id := range want {
		if strings.Contains(id, ".") && strings.Contains(ci, id) {
			t.Errorf(".ci/run names module %s itself: it must take the IDs from README.md", id)
		}
	}
}

func TestNetworksAndCommandDocumented(t *testing.T) {
	readme := section(readDoc(t, "README.md"), "## Modules", false)
	ref := readDoc(t, "docs/configuration.md")
	for network := range keepAcceptingNetworks {
		for doc, text := range map[string]string{"README.md, Modules": readme, "docs/configuration.md": ref, "xcaddy.md": readDoc(t, "xcaddy.md")} {
			if !strings.Contains(text, "`"+network+"/") {
				t.Errorf("%s does not name the network %s/", doc, network)
			}
		}
	}
	if _, ok := caddycmd.Commands()["gunshu"]; !ok {
		t.Fatal("the gunshu command is not registered")
	}
	for _, sub := range gunshuSubcommands(t) {
		if !strings.Contains(readme, "`caddy gunshu "+sub.Name()+"`") {
			t.Errorf("README.md's Modules section does not name caddy gunshu %s", sub.Name())
		}
	}
}

func gunshuSubcommands(t *testing.T) []*cobra.Command {
	t.Helper()
	root := &cobra.Command{Use: "gunshu"}
	caddycmd.Commands()["gunshu"].CobraFunc(root)
	if len(root.Commands()) == 0 {
		t.Fatal("caddy gunshu has no subcommands")
	}
	return root.Commands()
}

// TestCommandFlagsDocumented: the Command section of the reference has a
// row per flag with the flag's default; no row for a flag that is gone.
func TestCommandFlagsDocumented(t *testing.T) {
	rows := tableRows(section(readDoc(t, "docs/configuration.md"), "## Command (`caddy gunshu`)", false))
	flags := map[string]string{}
	for _, sub := range gunshuSubcommands(t) {
		for _, f := range collect(sub.Flags().VisitAll) {
			def := f.DefValue
			switch {
			case f.Value.Type() == "bool" && def == "false":
				def = "off"
			case def == "":
				def = "—"
			}
			if prev, ok := flags[f.Name]; ok && prev != def {
				t.Errorf("--%s has the default %s on one subcommand and %s on another", f.Name, prev, def)
			}
			flags[f.Name] = def
		}
	}
	for name, def := range flags {
		row, ok := rows["--"+name]
		if !ok {
			t.Errorf("docs/configuration.md, Command: no row for --%s", name)
			continue
		}
		if got := firstCell(row); !sameDefault(got, def) {
			t.Errorf("docs/configuration.md, Command: --%s defaults to %q, not %q", name, def, got)
		}
	}
	for name := range rows {
		if _, ok := flags[strings.TrimPrefix(name, "--")]; !ok {
			t.Errorf("docs/configuration.md, Command: --%s is not a flag of caddy gunshu", name)
		}
	}
}

// collect gathers what visit visits. (It takes the flag type from
// cobra's FlagSet.VisitAll, so this test needs no import of pflag, which
// the module only has through cobra.)
func collect[T any](visit func(func(T))) []T {
	var all []T
	visit(func(v T) { all = append(all, v) })
	return all
}

// firstCell is a row's first cell after the name: its first code span,
// or the cell's text when it has none.
func firstCell(row []string) string {
	cell := strings.TrimSpace(row[0])
	if _, rest, ok := strings.Cut(cell, "`"); ok {
		if code, _, ok := strings.Cut(rest, "`"); ok {
			return code
		}
	}
	return cell
}

// moduleSection is the reference's section of a module: the level-2
// heading that ends with its ID in a code span.
func moduleSection(t *testing.T, ref, id string) string {
	t.Helper()
	for _, l := range strings.Split(ref, "\n") {
		if strings.HasPrefix(l, "## ") && strings.HasSuffix(l, "(`"+id+"`)") {
			return section(ref, l, false)
		}
	}
	return ""
}

// jsonFields are the JSON names of typ's fields, those of embedded
// structs of this repository included (own); fields of embedded structs
// of other modules (foreign) may be documented, need not be.
func jsonFields(typ reflect.Type, own, foreign map[string]bool) {
	for i := range typ.NumField() {
		f := typ.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			if strings.HasPrefix(f.Type.PkgPath(), modulePath) {
				jsonFields(f.Type, own, foreign)
			} else {
				jsonFields(f.Type, foreign, foreign)
			}
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		own[name] = true
	}
}

// documentedWith are object types documented in a module's section
// beside the module's own fields.
var documentedWith = map[string][]reflect.Type{
	"gunshu": {reflect.TypeFor[ManagerConfig]()},
}

// TestReferenceDocumentsEveryField: every module has a section in
// docs/configuration.md whose tables have a row per JSON field, and no
// row for a field that does not exist.
func TestReferenceDocumentsEveryField(t *testing.T) {
	ref := readDoc(t, "docs/configuration.md")
	for _, id := range registeredModules(t) {
		info, _ := caddy.GetModule(id)
		text := moduleSection(t, ref, id)
		if text == "" {
			t.Errorf("docs/configuration.md has no section ending in (`%s`)", id)
			continue
		}
		own, foreign := map[string]bool{}, map[string]bool{}
		jsonFields(moduleType(info), own, foreign)
		for _, typ := range documentedWith[id] {
			jsonFields(typ, own, foreign)
		}
		rows := tableRows(text)
		for _, f := range slices.Sorted(maps.Keys(own)) {
			if _, ok := rows[f]; !ok {
				t.Errorf("docs/configuration.md, %s: no row for the field %s", id, f)
			}
		}
		for f := range rows {
			if !own[f] && !foreign[f] {
				t.Errorf("docs/configuration.md, %s: row %s is not a field of the module", id, f)
			}
		}
	}
}

// sameDefault reports whether the docs' default is the code's: the same
// text, or the same duration however spelled (60s, 1m).
func sameDefault(doc, code string) bool {
	if doc == code {
		return true
	}
	d, err1 := caddy.ParseDuration(doc)
	c, err2 := caddy.ParseDuration(code)
	return err1 == nil && err2 == nil && d == c
}

// docDuration spells a duration as the docs do: 720h, 5m, 500ms.
func docDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// TestReferenceDefaultsAreTheCodes: the defaults the reference gives are
// the constants the code applies.
func TestReferenceDefaultsAreTheCodes(t *testing.T) {
	itoa := strconv.Itoa
	dur := docDuration
	quoted := func(s []string) string { return `["` + strings.Join(s, `", "`) + `"]` }
	var ports []string
	for _, p := range gunshu.DefaultDeniedPorts {
		ports = append(ports, itoa(int(p)))
	}
	route := map[string]string{
		"max_relays":       itoa(gunshu.DefaultMaxRelays),
		"route_continue":   strconv.FormatFloat(gunshu.DefaultRouteContinue, 'g', -1, 64),
		"attempts":         itoa(gunshu.DefaultAttempts),
		"guards":           itoa(gunshu.DefaultGuards),
		"guard_lifetime":   dur(gunshu.DefaultGuardLifetime),
		"list_stale_limit": dur(gunshu.DefaultListStaleLimit),
	}
	want := map[string]map[string]string{
		"gunshu": {
			"patrol_interval": dur(gunshu.DefaultPatrolInterval),
			"test_timeout":    dur(gunshu.DefaultTestTimeout),
			"max_services":    itoa(DefaultMaxServices),
			"max_per_ip":      itoa(gunshu.DefaultMaxPerIP),
			"max_per_network": itoa(gunshu.DefaultMaxPerNetwork),
			"register_rate":   fmt.Sprintf(`{"every": "%s", "burst": %d}`, dur(gunshu.DefaultRegisterRate.Every), gunshu.DefaultRegisterRate.Burst),
		},
		"gunshu.registries.redis": {
			"key_prefix":        redisregistry.DefaultKeyPrefix,
			"timeout":           dur(redisregistry.DefaultTimeout),
			"snapshot_interval": dur(redisregistry.DefaultSnapshotInterval),
			"expire_after":      dur(redisregistry.DefaultExpireAfter),
		},
		"layer4.matchers.gunshu":         {"commands": quoted(gunshu.FirstCommands)},
		"layer4.handlers.gunshu_manager": {"manager": DefaultManager},
		"layer4.handlers.gunshu_relay": {
			"register_interval": dur(gunshu.DefaultRegisterInterval),
			"deny_ports":        "[" + strings.Join(ports, ", ") + "]",
			"max_list":          itoa(gunshu.DefaultMaxHops),
			"dial_timeout":      dur(gunshu.DefaultDialTimeout),
			"route_timeout":     dur(gunshu.DefaultRouteTimeout),
		},
		"layer4.handlers.gunshu_responder": {
			"max_list":          itoa(gunshu.DefaultMaxList),
			"handshake_timeout": dur(gunshu.DefaultCommandTimeout),
		},
		"layer4.handlers.gunshu_initiator": {
			"handshake_timeout": dur(gunshu.DefaultCommandTimeout),
			"dial_timeout":      dur(gunshu.DefaultDialTimeout),
			"route_timeout":     dur(gunshu.DefaultRouteTimeout),
			"silent_wait":       dur(gunshu.DefaultSilentWait),
			"max_silent":        itoa(gunshu.DefaultMaxSilent),
		},
		"caddy.listeners.gunshu": {
			"timeout":     dur(gunshu.DefaultCommandTimeout),
			"max_pending": itoa(gunshu.DefaultMaxPending),
		},
		"http.reverse_proxy.transport.gunshu": route,
	}
	maps.Copy(want["layer4.handlers.gunshu_initiator"], route)
	ref := readDoc(t, "docs/configuration.md")
	for id, fields := range want {
		text := moduleSection(t, ref, id)
		rows := tableRows(text)
		for f, def := range fields {
			row, ok := rows[f]
			if !ok {
				t.Errorf("docs/configuration.md, %s: no row for %s", id, f)
				continue
			}
			if got := firstCell(row); !sameDefault(got, def) {
				t.Errorf("docs/configuration.md, %s: %s defaults to %s in the code, not %s", id, f, def, got)
			}
		}
		// The section's JSON shows a field it sets at its default.
		for _, b := range fencedBlocks(text, "json") {
			walkObjects(parseJSONBlock(t, b.text), func(_ string, obj map[string]any) {
				for f, def := range fields {
					if v, ok := obj[f]; ok && !jsonIsDefault(v, def) {
						t.Errorf("docs/configuration.md, %s: the JSON sets %s to %v, not its default %s", id, f, v, def)
					}
				}
			})
		}
	}
}

// jsonIsDefault reports whether v, a value of the docs' JSON, is def.
func jsonIsDefault(v any, def string) bool {
	switch v := v.(type) {
	case string:
		return sameDefault(v, def)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64) == def
	}
	var d any
	return json.Unmarshal([]byte(def), &d) == nil && reflect.DeepEqual(d, v)
}

// parseJSONBlock parses a JSON block of the docs: a whole value, or the
// members of an object.
func parseJSONBlock(t *testing.T, text string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		if err2 := json.Unmarshal([]byte("{"+text+"}"), &v); err2 != nil {
			t.Fatalf("not JSON: %v\n%s", err, text)
		}
	}
	return v
}

// caddyfileGrammars name, per module with a block of options, the
// function whose doc comment gives its grammar, the line that opens the
// block there, and the line that opens it in the reference.
var caddyfileGrammars = map[string]struct{ fn, code, doc string }{
	"gunshu":                              {"parseGlobalOption", "manager", "manager"},
	"gunshu.registries.redis":             {"RedisRegistry.UnmarshalCaddyfile", "redis", "registry redis"},
	"layer4.handlers.gunshu_relay":        {"RelayHandler.UnmarshalCaddyfile", "gunshu_relay", "gunshu_relay"},
	"layer4.handlers.gunshu_responder":    {"ResponderHandler.UnmarshalCaddyfile", "gunshu_responder", "gunshu_responder"},
	"layer4.handlers.gunshu_initiator":    {"InitiatorHandler.UnmarshalCaddyfile", "gunshu_initiator", "gunshu_initiator"},
	"caddy.listeners.gunshu":              {"ListenerWrapper.UnmarshalCaddyfile", "gunshu", "gunshu"},
	"http.reverse_proxy.transport.gunshu": {"Transport.UnmarshalCaddyfile", "transport gunshu", "transport gunshu"},
}

// TestReferenceCaddyfileGrammarIsTheCodes: the options of each module's
// Caddyfile block in the reference are those of the grammar in the doc
// comment of the function that parses it.
func TestReferenceCaddyfileGrammarIsTheCodes(t *testing.T) {
	docs := funcDocs(t)
	ref := readDoc(t, "docs/configuration.md")
	for id, g := range caddyfileGrammars {
		code := blockOptions(docs[g.fn], g.code)
		if len(code) == 0 {
			t.Errorf("%s: no %q block in the doc comment of %s", id, g.code, g.fn)
			continue
		}
		var doc []string
		for _, block := range fencedBlocks(moduleSection(t, ref, id), "caddyfile") {
			if doc = blockOptions(block.text, g.doc); doc != nil {
				break
			}
		}
		if !slices.Equal(doc, code) {
			t.Errorf("docs/configuration.md, %s: the Caddyfile block has the options\n%v\nthe grammar in %s's doc comment\n%v", id, doc, g.fn, code)
		}
	}
}

// funcDocs are the doc comments of this package's functions, by name
// (Type.Method for methods).
func funcDocs(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]string{}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Doc == nil {
				continue
			}
			key := fn.Name.Name
			if fn.Recv != nil {
				key = receiverName(fn.Recv.List[0].Type) + "." + key
			}
			docs[key] = fn.Doc.Text()
		}
	}
	return docs
}

// receiverName is the name of a method's receiver type: T for *T, T[P].
func receiverName(recv ast.Expr) string {
	switch r := recv.(type) {
	case *ast.StarExpr:
		return receiverName(r.X)
	case *ast.IndexExpr:
		return receiverName(r.X)
	case *ast.IndexListExpr:
		return receiverName(r.X)
	case *ast.Ident:
		return r.Name
	}
	return ""
}

// blockOptions are the first words of the lines one level inside the
// first block of text opened by a line starting with open (options
// written as <placeholders> left out), sorted; nil without such a block
// or when it names no option.
func blockOptions(text, open string) []string {
	depth := -1
	var opts []string
	for _, l := range strings.Split(text, "\n") {
		indent := len(l) - len(strings.TrimLeft(l, "\t"))
		line := strings.TrimSpace(l)
		if depth < 0 {
			if (line == open+" {" || strings.HasPrefix(line, open+" ")) && strings.HasSuffix(line, "{") {
				depth = indent
			}
			continue
		}
		if indent <= depth && line != "" {
			break
		}
		if word, _, _ := strings.Cut(line, " "); indent == depth+1 && word != "" && !strings.HasPrefix(word, "<") {
			opts = append(opts, word)
		}
	}
	if depth < 0 {
		return nil
	}
	slices.Sort(opts)
	return opts
}

// block is a fenced code block of a document.
type block struct {
	doc  string
	line int
	text string
}

// fencedBlocks are the code blocks of text fenced as lang.
func fencedBlocks(text, lang string) []block {
	var blocks []block
	var cur *block
	for i, l := range strings.Split(text, "\n") {
		switch {
		case cur == nil && l == "```"+lang:
			cur = &block{line: i + 2}
		case cur != nil && l == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	return blocks
}

func docBlocks(t *testing.T, lang string) []block {
	var all []block
	for _, name := range docFiles {
		for _, b := range fencedBlocks(readDoc(t, name), lang) {
			b.doc = name
			all = append(all, b)
		}
	}
	return all
}

var grammarToken = regexp.MustCompile(`<[a-z][^>]*>`)

// fragmentContext wraps a Caddyfile fragment, by its first word, in a
// config where it belongs (%s: the fragment, indented as it would be).
var fragmentContext = map[string]struct {
	indent int
	config string
}{
	"gunshu_relay":     {4, "{\n\tlayer4 {\n\t\t:0 {\n\t\t\troute {\n%s\t\t\t}\n\t\t}\n\t}\n}\n"},
	"gunshu_responder": {4, "{\n\tlayer4 {\n\t\t:0 {\n\t\t\troute {\n%s\t\t\t}\n\t\t}\n\t}\n}\n"},
	"gunshu_initiator": {4, "{\n\tlayer4 {\n\t\t:0 {\n\t\t\troute {\n%s\t\t\t}\n\t\t}\n\t}\n}\n"},
	"gunshu_manager":   {4, "{\n\tlayer4 {\n\t\t:0 {\n\t\t\troute {\n%s\t\t\t}\n\t\t}\n\t}\n}\n"},
	"reverse_proxy":    {1, "http://127.0.0.1:0 {\n%s}\n"},
	"gunshu_status":    {1, "http://127.0.0.1:0 {\n%s}\n"},
	"log":              {1, "{\n%s}\n"},
	"layer4":           {1, "{\n%s}\n"},
	"registry":         {3, "{\n\tgunshu {\n\t\tmanager {\n%s\t\t}\n\t}\n}\n"},
}

// TestDocCaddyfilesAdaptAndValidate: every Caddyfile of the docs is
// formatted as caddy fmt would; a whole config, or a fragment put where
// it belongs, adapts without warnings and validates (its environment
// variables set, Redis pointed at a closed loopback port: validating
// provisions, and a Redis registry then connects). Grammar blocks (with
// <placeholders>) are checked against the code by the tests above.
func TestDocCaddyfilesAdaptAndValidate(t *testing.T) {
	validated := 0
	for _, b := range docBlocks(t, "caddyfile") {
		name := fmt.Sprintf("%s:%d", b.doc, b.line)
		if grammarToken.MatchString(b.text) {
			continue
		}
		t.Run(name, func(t *testing.T) {
			if w, differs := caddyfile.FormattingDifference(name, []byte(b.text)); differs {
				t.Errorf("not formatted as caddy fmt does, from line %d", b.line+w.Line-1)
			}
			config := b.text
			first := strings.Fields(config)[0]
			if ctx, ok := fragmentContext[first]; ok {
				config = fmt.Sprintf(ctx.config, indent(strings.TrimSuffix(b.text, "\n"), strings.Repeat("\t", ctx.indent))+"\n")
			} else if first != "{" && !strings.ContainsAny(first, ":.") {
				t.Fatalf("a fragment starting with %q: add where it belongs to fragmentContext", first)
			}
			setPlaceholderEnv(t, config)
			out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config), map[string]any{"filename": name})
			if err != nil {
				t.Fatalf("adapting: %v\n%s", err, config)
			}
			if len(warnings) > 0 {
				t.Errorf("adapting: warnings %v", warnings)
			}
			validateConfig(t, out)
			validated++
		})
	}
	if validated < 10 {
		t.Errorf("only %d Caddyfiles of the docs were validated: is the block detection broken?", validated)
	}
}

var envPlaceholder = regexp.MustCompile(`\{(?:env\.|\$)([A-Z_]+)\}`)

// setPlaceholderEnv sets every environment variable config names to a
// value of the kind its name says.
func setPlaceholderEnv(t *testing.T, config string) {
	for _, m := range envPlaceholder.FindAllStringSubmatch(config, -1) {
		value := "s3cret"
		switch {
		case strings.HasSuffix(m[1], "_IP"):
			value = "127.0.0.1"
		case strings.HasSuffix(m[1], "_ADDR"), strings.HasSuffix(m[1], "_LISTEN"):
			value = "127.0.0.1:7000"
		}
		t.Setenv(m[1], value)
	}
}

// validateConfig provisions cfg (JSON) as caddy validate does, with every
// Redis registry's addresses replaced by a loopback port where nothing
// listens.
func validateConfig(t *testing.T, cfg []byte) {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(cfg, &root); err != nil {
		t.Fatal(err)
	}
	closed := testkit.ClosedAddr(t)
	walkObjects(root, func(key string, obj map[string]any) {
		if key == "registry" && obj["module"] == "redis" {
			obj["addresses"] = []any{closed}
			delete(obj, "master_name")
		}
	})
	out, err := json.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	var config caddy.Config
	if err := caddy.StrictUnmarshalJSON(out, &config); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	if err := caddy.Validate(&config); err != nil {
		t.Errorf("validating: %v\n%s", err, out)
	}
}

// walkObjects calls fn with every object of v and the key it is under.
func walkObjects(v any, fn func(key string, obj map[string]any)) {
	var walk func(key string, v any)
	walk = func(key string, v any) {
		switch v := v.(type) {
		case map[string]any:
			fn(key, v)
			for k, child := range v {
				walk(k, child)
			}
		case []any:
			for _, child := range v {
				walk(key, child)
			}
		}
	}
	walk("", v)
}

// TestDocJSONDecodes: every JSON block of the docs is JSON (a whole value,
// or the members of an object), each object of one of our modules in it
// decodes into that module with no unknown field, and a whole config
// validates.
func TestDocJSONDecodes(t *testing.T) {
	checked := 0
	for _, b := range docBlocks(t, "json") {
		t.Run(fmt.Sprintf("%s:%d", b.doc, b.line), func(t *testing.T) {
			setPlaceholderEnv(t, b.text)
			v := parseJSONBlock(t, b.text)
			walkObjects(v, func(key string, obj map[string]any) {
				if id, inline := moduleOf(key, obj); id != "" {
					decodeStrictly(t, id, inline, obj)
					checked++
				}
				if key == "managers" {
					for name, m := range obj {
						if cfg, ok := m.(map[string]any); ok {
							raw, _ := json.Marshal(cfg)
							if err := caddy.StrictUnmarshalJSON(raw, new(ManagerConfig)); err != nil {
								t.Errorf("manager %q: %v", name, err)
							}
							checked++
						}
					}
				}
			})
			if obj, ok := v.(map[string]any); ok && (obj["apps"] != nil || obj["logging"] != nil) {
				raw, _ := json.Marshal(obj)
				validateConfig(t, raw)
			}
		})
	}
	if checked < 15 {
		t.Errorf("only %d objects of our modules checked in the docs' JSON: is the detection broken?", checked)
	}
}

// moduleOf is the module an object of a config is, by its inline key (or
// the key it is under), and that inline key; "" for other objects.
func moduleOf(key string, obj map[string]any) (id, inline string) {
	str := func(k string) string { s, _ := obj[k].(string); return s }
	switch {
	case str("handler") == "gunshu_status":
		return "http.handlers.gunshu_status", "handler"
	case strings.HasPrefix(str("handler"), "gunshu_"):
		return "layer4.handlers." + str("handler"), "handler"
	case key == "registry" && str("module") != "":
		return "gunshu.registries." + str("module"), "module"
	case str("protocol") == "gunshu":
		return "http.reverse_proxy.transport.gunshu", "protocol"
	case str("wrapper") == "gunshu":
		return "caddy.listeners.gunshu", "wrapper"
	case str("format") == "gunshu":
		return "caddy.logging.encoders.gunshu", "format"
	case str("filter") == "gunshu_redact":
		return "caddy.logging.encoders.filter.gunshu_redact", "filter"
	case key == "gunshu" && obj["managers"] != nil:
		return "gunshu", ""
	case key == "gunshu":
		return "layer4.matchers.gunshu", ""
	}
	return "", ""
}

func decodeStrictly(t *testing.T, id, inline string, obj map[string]any) {
	t.Helper()
	info, err := caddy.GetModule(id)
	if err != nil {
		t.Errorf("%s: %v", id, err)
		return
	}
	fields := maps.Clone(obj)
	delete(fields, inline)
	raw, _ := json.Marshal(fields)
	if err := caddy.StrictUnmarshalJSON(raw, info.New()); err != nil {
		t.Errorf("%s: %v in %s", id, err, raw)
	}
}

var link = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocLinksResolve: every relative link of the docs names a file of
// the repository, and every #anchor a heading of the file it points to.
func TestDocLinksResolve(t *testing.T) {
	for _, name := range docFiles {
		text := readDoc(t, name)
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			resolved := name
			if file != "" {
				resolved = path.Join(path.Dir(name), file)
				if _, err := os.Stat(filepath.Join("..", filepath.FromSlash(resolved))); err != nil {
					t.Errorf("%s links to %s, which does not exist", name, target)
					continue
				}
			}
			if anchor != "" && !slices.Contains(anchors(readDoc(t, resolved)), anchor) {
				t.Errorf("%s links to %s: %s has no heading with that anchor", name, target, resolved)
			}
		}
	}
}

// anchors are the anchors GitHub gives the headings of a Markdown text.
func anchors(text string) []string {
	var out []string
	seen := map[string]int{}
	inFence := false
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "```") {
			inFence = !inFence
		}
		if inFence || headingLevel(l) == 0 {
			continue
		}
		var slug bytes.Buffer
		for _, r := range strings.ToLower(strings.TrimSpace(strings.TrimLeft(l, "#"))) {
			switch {
			case r == ' ':
				slug.WriteByte('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r):
				slug.WriteRune(r)
			}
		}
		s := slug.String()
		if n := seen[s]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", s, n))
		} else {
			out = append(out, s)
		}
		seen[s]++
	}
	return out
}

// TestNetworkFieldsDocumented: the reference's "Network and exposure"
// table has a row per JSON field of the network view, and no other.
func TestNetworkFieldsDocumented(t *testing.T) {
	rows := tableRows(section(readDoc(t, "docs/configuration.md"), "## Network and exposure", false))
	var fields []string
	for _, f := range reflect.VisibleFields(reflect.TypeFor[networkView]()) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Type != reflect.TypeFor[exposureView]() {
			fields = append(fields, name)
			continue
		}
		for _, e := range reflect.VisibleFields(f.Type) {
			sub, _, _ := strings.Cut(e.Tag.Get("json"), ",")
			fields = append(fields, name+"."+sub)
		}
	}
	slices.Sort(fields)
	if documented := slices.Sorted(maps.Keys(rows)); !slices.Equal(documented, fields) {
		t.Errorf("docs/configuration.md, Network and exposure: rows %v, want the fields %v", documented, fields)
	}
}
