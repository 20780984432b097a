// Command wordcount counts the words in every file of an input directory.
//
// It is the word-count example from the Bacalhau article "Distributed
// Computing With Dried, Salted Cod Fish, WASM, And (Tiny)Go", made robust:
// files are streamed through a fixed 64 KiB buffer, so any size and any
// binary content work, and no token length limit applies.
//
// Input directory: argv[1], or /inputs by default. Every regular file in it
// (subdirectories are skipped) is read in name order. For each file a line
// "<file> has <n> words" is written to /outputs/count.txt, and the grand
// total is printed to stdout.
//
// A word is a maximal run of bytes that are not ASCII whitespace (space,
// \t, \n, \v, \f, \r), the same as Python's len(data.split()) on bytes.
package main

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"os"
	"path"
	"sort"
)

const outputPath = "/outputs/count.txt"

// isSpace reports whether b is ASCII whitespace.
func isSpace(b byte) bool {
	switch b {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// countWords returns the number of words read from r.
func countWords(r io.Reader) (int64, error) {
	buf := make([]byte, 64*1024)
	var n int64
	inWord := false
	for {
		m, err := r.Read(buf)
		for _, b := range buf[:m] {
			if isSpace(b) {
				inWord = false
			} else if !inWord {
				inWord = true
				n++
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// countFile opens the file at p and counts its words.
func countFile(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return countWords(f)
}

// isRegularFile reports whether e is a regular file, following a symlink
// (which is skipped if it is dangling or points at a non-regular file).
func isRegularFile(dir string, e os.DirEntry) bool {
	if e.Type()&os.ModeSymlink != 0 {
		fi, err := os.Stat(path.Join(dir, e.Name()))
		return err == nil && fi.Mode().IsRegular()
	}
	return e.Type().IsRegular()
}

// fail prints a message to stderr and exits with status 1.
func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wordcount: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	inputDir := "/inputs"
	if len(os.Args) > 1 {
		inputDir = os.Args[1]
	}

	entries, err := os.ReadDir(inputDir)
	if err != nil {
		fail("cannot read input directory %s: %v", inputDir, err)
	}

	var names []string
	for _, e := range entries {
		if isRegularFile(inputDir, e) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		log.Fatal("No files found")
	}
	sort.Strings(names) // ReadDir already sorts; keep the order explicit.

	out, err := os.Create(outputPath)
	if err != nil {
		fail("cannot create %s: %v", outputPath, err)
	}
	w := bufio.NewWriter(out)

	var total int64
	for _, name := range names {
		n, err := countFile(path.Join(inputDir, name))
		if err != nil {
			fail("cannot read %s: %v", name, err)
		}
		total += n
		fmt.Fprintf(w, "%s has %d words\n", name, n)
	}

	if err := w.Flush(); err != nil {
		fail("cannot write %s: %v", outputPath, err)
	}
	if err := out.Close(); err != nil {
		fail("cannot write %s: %v", outputPath, err)
	}

	fmt.Println("Total word count: ", total)
}
