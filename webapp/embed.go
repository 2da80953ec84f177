// Package webapp holds Parley's browser client: the conference page (index.html),
// the viewer page of webinar rooms (watch.html),
// its stylesheet (css/) and its ES modules (js/, among them roomapi.js, the
// JavaScript Room API). Nothing is built: the files are served as they are.
package webapp

import "embed"

// FS holds index.html, css/ and js/ with their paths as in this directory
// ("index.html", "css/app.css", "js/roomapi.js", …), for http.FileServerFS.
//
//go:embed index.html recordings.html watch.html css js
var FS embed.FS
