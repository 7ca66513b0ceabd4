package config

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem with one key.
type FieldError struct {
	// Key is the full key, e.g. simlab:workers.count.
	Key string
	// Line is the line in the stack file, when known (0 otherwise).
	Line int
	// Msg says what is wrong, including the bad value.
	Msg string
}

func (e FieldError) Error() string { return e.Key + ": " + e.Msg }

// Errors is every problem found in a configuration. It is returned as one
// error so callers see all problems at once.
type Errors struct {
	// File is the stack file the problems were found in, when known.
	File string
	List []FieldError
}

func (e *Errors) add(key string, line int, format string, args ...any) {
	e.List = append(e.List, FieldError{Key: key, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (e *Errors) err() error {
	if e == nil || len(e.List) == 0 {
		return nil
	}
	return e
}

// Lines renders one line per problem, prefixed with file:line when known.
func (e *Errors) Lines() []string {
	list := append([]FieldError(nil), e.List...)
	sort.SliceStable(list, func(i, j int) bool {
		if list[i].Line != list[j].Line && list[i].Line != 0 && list[j].Line != 0 {
			return list[i].Line < list[j].Line
		}
		return false
	})
	out := make([]string, 0, len(list))
	for _, fe := range list {
		prefix := ""
		switch {
		case e.File != "" && fe.Line > 0:
			prefix = fmt.Sprintf("%s:%d: ", e.File, fe.Line)
		case e.File != "":
			prefix = e.File + ": "
		}
		out = append(out, prefix+fe.Error())
	}
	return out
}

func (e *Errors) Error() string {
	n := len(e.List)
	head := fmt.Sprintf("%d configuration problem", n)
	if n != 1 {
		head += "s"
	}
	return head + ":\n  " + strings.Join(e.Lines(), "\n  ")
}
