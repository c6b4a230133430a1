// The web page's HTML. `{{style}}`, `{{script}}` and `{{config}}` are filled in by `WebPage` (hashed asset paths, the
// model's defaults and limits as JSON). Sections with `data-modes` show only in those modes (page.js).

/// The page's three files, as raw string literals: `\` and `"` are literal, nothing is interpolated.
enum PageSource {}

extension PageSource {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Paella</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{{style}}">
<script type="application/json" id="config">{{config}}</script>
<script src="{{script}}" defer></script>
</head>
<body>
<header class="bar">
  <h1>Paella</h1>
  <span id="status" class="status" aria-live="polite"></span>
  <button id="key-toggle" type="button" class="ghost" aria-expanded="false" aria-controls="key-panel">API key</button>
</header>
<div id="key-panel" class="key-panel" hidden>
  <label for="key">API key of this server</label>
  <input id="key" type="password" autocomplete="off" spellcheck="false" placeholder="paste the key">
  <p class="hint">Kept in this browser only (localStorage) and sent as <code>Authorization: Bearer</code>.</p>
</div>

<main class="layout">
  <form id="form" class="controls" novalidate>
    <div class="tabs" role="tablist" aria-label="Mode">
      <button type="button" role="tab" data-mode="generate" aria-selected="true">Generate</button>
      <button type="button" role="tab" data-mode="inpaint" aria-selected="false">Inpaint</button>
      <button type="button" role="tab" data-mode="outpaint" aria-selected="false">Outpaint</button>
      <button type="button" role="tab" data-mode="edit" aria-selected="false">Edit</button>
      <button type="button" role="tab" data-mode="vary" aria-selected="false">Vary</button>
      <button type="button" role="tab" data-mode="interpolate" aria-selected="false">Interpolate</button>
    </div>

    <p id="mode-hint" class="hint"></p>

    <div class="field" data-modes="generate inpaint outpaint edit">
      <label for="prompt">Prompt</label>
      <textarea id="prompt" rows="3" placeholder="a large red circle at the top left on a white background"></textarea>
    </div>
    <div class="field" data-modes="generate">
      <label for="negative_prompt">Negative prompt <span class="optional">optional</span></label>
      <input id="negative_prompt" type="text" placeholder="what the image should not show">
    </div>
    <div class="field" data-modes="interpolate">
      <label for="from">From</label>
      <input id="from" type="text" placeholder="a red circle">
    </div>
    <div class="field" data-modes="interpolate">
      <label for="to">To</label>
      <input id="to" type="text" placeholder="a blue square">
    </div>
    <div class="row" data-modes="interpolate">
      <div class="field">
        <label for="frames">Frames</label>
        <input id="frames" type="number" min="2" step="1" value="4">
      </div>
      <div class="field">
        <label for="method">Method</label>
        <select id="method"><option value="lerp">lerp</option><option value="slerp">slerp</option></select>
      </div>
    </div>

    <div class="field" data-modes="inpaint outpaint edit vary">
      <label for="upload">Image</label>
      <input id="upload" type="file" accept="image/png,image/jpeg">
      <div id="frame" class="frame" hidden>
        <div id="stage" class="stage">
          <canvas id="photo"></canvas>
          <canvas id="mask" data-modes="inpaint" aria-label="Paint the part to repaint"></canvas>
        </div>
      </div>
    </div>
    <div class="row brush" data-modes="inpaint">
      <div class="field grow">
        <label for="brush">Brush <output id="brush-value" for="brush"></output></label>
        <input id="brush" type="range" min="4" max="80" step="2" value="24">
      </div>
      <button id="clear-mask" type="button" class="ghost">Clear mask</button>
    </div>
    <fieldset class="sides" data-modes="outpaint">
      <legend>Add pixels on each side</legend>
      <div class="field"><label for="extend-left">Left <output for="extend-left"></output></label><input id="extend-left" type="range" min="0" step="1"></div>
      <div class="field"><label for="extend-right">Right <output for="extend-right"></output></label><input id="extend-right" type="range" min="0" step="1"></div>
      <div class="field"><label for="extend-top">Top <output for="extend-top"></output></label><input id="extend-top" type="range" min="0" step="1"></div>
      <div class="field"><label for="extend-bottom">Bottom <output for="extend-bottom"></output></label><input id="extend-bottom" type="range" min="0" step="1"></div>
    </fieldset>
    <div class="field" data-modes="edit">
      <label for="strength">Strength <output id="strength-value" for="strength"></output></label>
      <input id="strength" type="range" min="0.05" max="1" step="0.05">
    </div>

    <details class="settings" open>
      <summary>Settings</summary>
      <div class="grid">
        <div class="field">
          <label for="steps">Steps</label>
          <input id="steps" type="number" min="1" step="1" inputmode="numeric">
        </div>
        <div class="field">
          <label for="guidance">Guidance</label>
          <input id="guidance" type="number" step="0.1" inputmode="decimal">
        </div>
        <div class="field">
          <label for="temperature">Temperature</label>
          <input id="temperature" type="text" inputmode="decimal" title="one number, or the first and last step's: 0.7, 0.3">
        </div>
        <div class="field">
          <label for="seed">Seed</label>
          <input id="seed" type="number" min="0" step="1" inputmode="numeric" placeholder="random">
        </div>
        <div class="field" data-modes="generate inpaint outpaint edit vary">
          <label for="n">Count</label>
          <input id="n" type="number" min="1" step="1" value="1" inputmode="numeric">
        </div>
      </div>
      <p class="hint">Empty fields take the model's defaults (shown greyed).</p>
    </details>

    <div class="actions">
      <button id="run" type="submit" class="primary">Generate</button>
      <button id="cancel" type="button" class="ghost" hidden>Cancel</button>
    </div>
    <div id="error" class="error" role="alert" hidden></div>
  </form>

  <section class="output" aria-label="Results">
    <div id="progress" class="progress" hidden>
      <img id="preview" alt="Preview of the image being sampled">
      <div class="progress-text">
        <p id="progress-label"></p>
        <div class="meter" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div id="meter-fill"></div></div>
      </div>
    </div>
    <h2>Results</h2>
    <p id="empty" class="hint">Your images appear here, newest first, with the settings that made them.</p>
    <ol id="gallery" class="gallery"></ol>
  </section>
</main>
</body>
</html>
"""#
}
