package main

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// The browser page: pageImages distinct images, each small enough to fit a
// TCP initial window (the model has no bandwidth or congestion window, so
// a larger image would be delivered faster than a real link could). A
// script writes the page's Navigation Timing into the DOM at the load
// event, where --dump-dom finds it.
const (
	pagePath   = "/page.html"
	pageImages = 20
	imageSide  = 48 // pixels: about 7 KiB of noise as PNG
	timingID   = "wan-timing"
)

const pageScript = `<script>
addEventListener('load', () => {
	const n = performance.getEntriesByType('navigation')[0];
	const loaded = [...document.images].filter(i => i.complete && i.naturalWidth > 0).length;
	document.getElementById('` + timingID + `').textContent =
		JSON.stringify({load: n.loadEventStart, firstByte: n.responseStart, images: loaded});
});
</script>`

// writeSite writes the page and its images into dir, from a fixed seed.
func writeSite(dir string, seed uint64) error {
	if err := os.MkdirAll(filepath.Join(dir, "img"), 0o755); err != nil {
		return err
	}
	rnd := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	var html strings.Builder
	html.WriteString("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>wan bench</title>" +
		"<link rel=\"icon\" href=\"data:,\"></head><body>\n")
	for i := range pageImages {
		img := image.NewRGBA(image.Rect(0, 0, imageSide, imageSide))
		for p := 0; p < len(img.Pix); p += 4 {
			v := rnd.Uint32()
			img.Pix[p], img.Pix[p+1], img.Pix[p+2], img.Pix[p+3] = uint8(v), uint8(v>>8), uint8(v>>16), 0xff
		}
		img.Set(0, 0, color.RGBA{uint8(i), 0, 0, 0xff}) // no two alike
		var buf bytes.Buffer
		if err := png.Encode(&buf, img); err != nil {
			return err
		}
		name := fmt.Sprintf("img/%02d.png", i)
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(&html, "<img src=\"/%s\" width=\"%d\" height=\"%d\" alt=\"\">\n", name, imageSide, imageSide)
	}
	html.WriteString("<pre id=\"" + timingID + "\"></pre>\n" + pageScript + "\n</body></html>\n")
	return os.WriteFile(filepath.Join(dir, strings.TrimPrefix(pagePath, "/")), []byte(html.String()), 0o644)
}
