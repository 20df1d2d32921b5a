package dataplane_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// maxFuncLines is the longest function (lines from func to its closing
// brace) the module's non-test code may have, so that a long switch
// becomes a table of handlers and a long sequence a list of named steps.
const maxFuncLines = 80

// longFuncs are the functions still over maxFuncLines, with their length
// today: each may shrink, never grow, and leaves the list when it fits
// (issue 14). Keyed by path from the module root and function (T.M for
// a method of T).
var longFuncs = map[string]int{}

// TestFunctionSize enforces maxFuncLines and maxCyclomatic over the whole
// module, with the ratchets of longFuncs and complexFuncs (both empty).
func TestFunctionSize(t *testing.T) {
	root := ".."
	fset := token.NewFileSet()
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line
			key := filepath.ToSlash(rel) + " " + funcName(fd)
			allowed, listed := longFuncs[key]
			switch {
			case listed:
				seen[key] = true
				if n > allowed {
					t.Errorf("%s is %d lines, more than the %d it is allowed: split it into named steps", key, n, allowed)
				} else if n <= maxFuncLines {
					t.Errorf("%s is %d lines now: remove it from longFuncs", key, n)
				}
			case n > maxFuncLines:
				t.Errorf("%s is %d lines, more than %d: split it (a table of handlers, or named steps)", key, n, maxFuncLines)
			}
			if c := cyclomatic(fd.Body); c > maxCyclomatic && complexFuncs[key] < c {
				t.Errorf("%s has cyclomatic complexity %d, more than %d: split its decisions into steps or a table", key, c, maxCyclomatic)
			} else if _, ok := complexFuncs[key]; ok {
				seen[key] = true
				if c <= maxCyclomatic {
					t.Errorf("%s has cyclomatic complexity %d now: remove it from complexFuncs", key, c)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key := range longFuncs {
		if !seen[key] {
			t.Errorf("longFuncs lists %s, which no longer exists", key)
		}
	}
	for key := range complexFuncs {
		if !seen[key] {
			t.Errorf("complexFuncs lists %s, which no longer exists", key)
		}
	}
}

// maxCyclomatic bounds a function's cyclomatic complexity (1 + its
// branches: if, for, case, &&, ||), as gocyclo counts it.
const maxCyclomatic = 30

// complexFuncs are the functions allowed past maxCyclomatic, with their
// complexity today and why.
var complexFuncs = map[string]int{}

// cyclomatic is 1 + the decision points of body.
func cyclomatic(body *ast.BlockStmt) int {
	c := 1
	ast.Inspect(body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt:
			c++
		case *ast.CaseClause:
			if n.List != nil {
				c++
			}
		case *ast.CommClause:
			if n.Comm != nil {
				c++
			}
		case *ast.BinaryExpr:
			if n.Op == token.LAND || n.Op == token.LOR {
				c++
			}
		case *ast.FuncLit:
			return false // counted as its own function
		}
		return true
	})
	return c
}

// funcName is fd's name, with its receiver's type for a method (T.M).
func funcName(fd *ast.FuncDecl) string {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return fd.Name.Name
	}
	typ := fd.Recv.List[0].Type
	if st, ok := typ.(*ast.StarExpr); ok {
		typ = st.X
	}
	if ix, ok := typ.(*ast.IndexExpr); ok {
		typ = ix.X
	}
	if id, ok := typ.(*ast.Ident); ok {
		return id.Name + "." + fd.Name.Name
	}
	return fd.Name.Name
}
