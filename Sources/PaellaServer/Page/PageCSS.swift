// The web page's stylesheet: one column on a phone, controls beside results from 760 pixels up; light and dark.

extension PageSource {
    static let css = #"""
:root {
  --bg: #f7f4ee; --panel: #ffffff; --text: #1f1b16; --muted: #6b6257; --line: #e3dcd0;
  --accent: #c2410c; --accent-soft: #fde7d6; --saffron: #e8a317; --danger: #b42318; --danger-soft: #fdecea;
  --radius: 10px; --shadow: 0 1px 2px rgba(60, 40, 20, .08), 0 4px 16px rgba(60, 40, 20, .06);
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #171411; --panel: #221e1a; --text: #f1ebe3; --muted: #a89d90; --line: #3a332c;
    --accent: #f97316; --accent-soft: #3b2415; --danger: #f97066; --danger-soft: #3a1a17;
    --shadow: 0 1px 2px rgba(0, 0, 0, .4);
  }
}
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
}
h1, h2 { margin: 0; font-weight: 650; letter-spacing: -.01em; }
h1 { font-size: 1.25rem; }
h1::before { content: ""; display: inline-block; width: .8em; height: .8em; margin-right: .45em; border-radius: 50%;
  background: radial-gradient(circle at 35% 35%, var(--saffron), var(--accent)); vertical-align: -.05em; }
h2 { font-size: 1rem; color: var(--muted); margin: 4px 0 10px; }
code { font-size: .9em; }

.bar { display: flex; align-items: center; gap: 12px; padding: 10px 16px; background: var(--panel);
  border-bottom: 1px solid var(--line); position: sticky; top: 0; z-index: 2; }
.status { flex: 1; min-width: 0; color: var(--muted); font-size: .85rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.status.bad { color: var(--danger); }
.key-panel { display: grid; gap: 6px; padding: 12px 16px; background: var(--panel); border-bottom: 1px solid var(--line); }
.key-panel input { max-width: 420px; }

.layout { display: grid; grid-template-columns: minmax(0, 1fr); gap: 20px; max-width: 1180px; margin: 0 auto; padding: 16px; }
@media (min-width: 760px) {
  .layout { grid-template-columns: minmax(300px, 380px) minmax(0, 1fr); align-items: start; }
  .controls { position: sticky; top: 64px; }
}
.controls, .progress, .card { background: var(--panel); border: 1px solid var(--line); border-radius: var(--radius); box-shadow: var(--shadow); }
.controls { display: grid; gap: 12px; padding: 14px; min-width: 0; }

.tabs { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 3px; padding: 3px; background: var(--bg); border-radius: 8px; }
.tabs button { padding: 6px 4px; border: 0; border-radius: 6px; background: transparent; color: var(--muted); font-weight: 550; }
.tabs button[aria-selected="true"] { background: var(--panel); color: var(--accent); box-shadow: var(--shadow); }

.field { display: grid; gap: 4px; min-width: 0; }
.row { display: flex; gap: 10px; align-items: end; }
.row > * { flex: 1; }
.row > button { flex: 0 0 auto; }
label, legend, summary { font-size: .85rem; font-weight: 600; }
label output, legend output { font-weight: 400; color: var(--muted); margin-left: .3em; }
.optional { font-weight: 400; color: var(--muted); }
.hint { margin: 0; color: var(--muted); font-size: .82rem; }
#mode-hint:empty { display: none; }

input, textarea, select, button { font: inherit; color: inherit; }
input[type="text"], input[type="password"], input[type="number"], textarea, select {
  width: 100%; min-width: 0; padding: 7px 9px; border: 1px solid var(--line); border-radius: 7px; background: var(--bg);
}
textarea { resize: vertical; }
input:focus-visible, textarea:focus-visible, select:focus-visible, button:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }
[aria-invalid="true"] { border-color: var(--danger) !important; background: var(--danger-soft) !important; }
input[type="range"] { width: 100%; accent-color: var(--accent); }
input[type="file"] { max-width: 100%; font-size: .85rem; }
::placeholder { color: var(--muted); opacity: .75; }

button { cursor: pointer; border-radius: 7px; }
.primary { padding: 9px 18px; border: 0; background: var(--accent); color: #fff; font-weight: 650; }
.primary:disabled { opacity: .6; cursor: progress; }
.ghost { padding: 6px 12px; border: 1px solid var(--line); background: transparent; }
.ghost:hover, .tabs button:hover { color: var(--accent); }
.actions { display: flex; gap: 10px; }
.actions .primary { flex: 1; }

fieldset { margin: 0; padding: 8px 10px 10px; border: 1px solid var(--line); border-radius: 8px; display: grid;
  grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 6px 12px; }
.settings { border-top: 1px solid var(--line); padding-top: 10px; }
.settings summary { cursor: pointer; margin-bottom: 8px; }
.settings .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(100px, 1fr)); gap: 8px 10px; margin-bottom: 6px; }

.frame { margin-top: 6px; border-radius: 8px; overflow: hidden;
  background: repeating-conic-gradient(var(--line) 0 25%, transparent 0 50%) 0 0 / 16px 16px; }
.stage { position: relative; }
.stage canvas { display: block; width: 100%; height: auto; }
#mask { position: absolute; inset: 0; height: 100%; opacity: .55; cursor: crosshair; touch-action: none; }
.frame.outpaint .stage { outline: 2px dashed var(--accent); }

.error { padding: 10px 12px; border-radius: 8px; background: var(--danger-soft); color: var(--danger); font-size: .9rem; }
.error strong { display: block; }

.output { min-width: 0; }
.progress { display: flex; gap: 14px; align-items: center; padding: 12px; margin-bottom: 16px; }
.progress img { width: 128px; height: 128px; flex: 0 0 auto; object-fit: contain; border-radius: 6px; background: var(--bg); image-rendering: pixelated; }
.progress img:not([src]) { visibility: hidden; }
.progress-text { flex: 1; min-width: 0; }
.progress-text p { margin: 0 0 8px; }
.meter { height: 8px; border-radius: 4px; background: var(--bg); overflow: hidden; }
#meter-fill { height: 100%; width: 0; background: linear-gradient(90deg, var(--saffron), var(--accent)); transition: width .2s; }

.gallery { list-style: none; margin: 0; padding: 0; display: grid; gap: 14px;
  grid-template-columns: repeat(auto-fill, minmax(min(240px, 100%), 1fr)); }
.card { padding: 10px; display: grid; gap: 8px; align-content: start; min-width: 0; }
.card .images { display: grid; gap: 6px; grid-template-columns: repeat(auto-fill, minmax(72px, 1fr)); }
.card figure { margin: 0; position: relative; }
.card figure img { display: block; width: 100%; aspect-ratio: auto; border-radius: 6px; background: var(--bg); }
.card img.small { image-rendering: pixelated; }
.card figure a.download { position: absolute; right: 4px; bottom: 4px; padding: 1px 6px; border-radius: 5px; font-size: .75rem;
  background: rgba(0, 0, 0, .6); color: #fff; text-decoration: none; }
.card .what { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
.card .mode { display: inline-block; margin-right: 6px; padding: 0 6px; border-radius: 5px; background: var(--accent-soft);
  color: var(--accent); font-size: .75rem; font-weight: 650; text-transform: uppercase; letter-spacing: .03em; vertical-align: .1em; }
.card dl { margin: 0; display: grid; grid-template-columns: auto minmax(0, 1fr); gap: 1px 10px; font-size: .8rem; }
.card dt { color: var(--muted); }
.card dd { margin: 0; overflow-wrap: anywhere; font-variant-numeric: tabular-nums; }
.card .buttons { display: flex; flex-wrap: wrap; gap: 6px; }
.card .buttons button { font-size: .8rem; padding: 4px 10px; }
"""#
}
