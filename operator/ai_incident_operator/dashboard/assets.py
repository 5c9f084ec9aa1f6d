"""The dashboard's stylesheet and its one small script, shipped in the package.

Nothing is fetched at run time. The script only makes the pages live: it opens the
region's server-sent events (`data-events`) and puts in the HTML the server rendered.
Without it, every page still reads, and every action is a plain form.
"""

CSS = """\
:root { color-scheme: light; --ink: #1a1a1a; --muted: #4a4a4a; --line: #c8c8c8;
  --bad: #a4000f; --warn: #7a4b00; --ok: #125c2a; --link: #0040a8; }
* { box-sizing: border-box; }
body { font: 16px/1.45 system-ui, sans-serif; color: var(--ink); background: #fff; margin: 0; }
header { background: #f2f2f2; border-bottom: 1px solid var(--line); padding: .5rem 1rem; }
header nav a { margin-right: 1rem; font-weight: 600; }
header p { margin: .25rem 0 0; color: var(--muted); }
main { padding: 1rem; max-width: 80rem; }
a { color: var(--link); }
a:focus, button:focus, textarea:focus, input:focus, summary:focus {
  outline: 3px solid #ffbf47; outline-offset: 2px; }
.skip { position: absolute; left: -999px; }
.skip:focus { left: 1rem; top: .5rem; background: #fff; padding: .25rem; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; width: 100%; }
caption { text-align: left; font-weight: 700; padding: .25rem 0; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
thead th { background: #f2f2f2; }
small { color: var(--muted); }
.sev { display: inline-block; padding: 0 .4rem; border-radius: .25rem; font-weight: 700; color: #fff; }
.sev1 { background: var(--bad); } .sev2 { background: var(--warn); }
.sev3 { background: #34495e; } .sevx { background: var(--muted); }
.warn { color: var(--warn); font-weight: 600; }
.cond.True { color: var(--ok); } .cond.False { color: var(--bad); } .cond.Unknown { color: var(--muted); }
.notice { padding: .5rem .75rem; border-left: .4rem solid; }
.notice.ok { border-color: var(--ok); background: #eaf6ee; }
.notice.refused { border-color: var(--bad); background: #fbeaea; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
.facts dt { font-weight: 600; }
.actions form { margin: 0 0 1rem; }
.actions label { display: block; font-weight: 600; margin-top: .4rem; }
.actions label.check { font-weight: 400; }
textarea { width: 100%; max-width: 40rem; font: inherit; }
button { font: inherit; padding: .3rem .8rem; border: 2px solid var(--ink); background: #fff;
  border-radius: .25rem; cursor: pointer; margin-top: .4rem; }
.hint { color: var(--muted); margin: .2rem 0; }
pre { white-space: pre-wrap; background: #f7f7f7; padding: .5rem; border: 1px solid var(--line); }
.diff { width: auto; }
"""

JS = """\
// Live regions: the server renders the HTML; this only puts it in place.
"use strict";
for (const region of document.querySelectorAll("[data-events]")) {
  const events = new EventSource(region.dataset.events);
  events.addEventListener("update", (event) => { region.innerHTML = event.data; });
  events.addEventListener("stale", (event) => { region.dataset.stale = event.data; });
}
"""
