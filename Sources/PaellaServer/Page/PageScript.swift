// The web page's script: builds a job from the form, posts it to /api/jobs, follows its server-sent events with
// fetch() (EventSource cannot send the Authorization header) and adds the result to the gallery.

extension PageSource {
    static let script = #"""
'use strict';

const config = JSON.parse(document.getElementById('config').textContent);
const $ = (id) => document.getElementById(id);
const keyStorage = 'paella.apiKey';
const modes = {
  generate: { run: 'Generate', hint: '' },
  inpaint: { run: 'Inpaint', hint: 'Upload an image, then paint over the part to repaint.' },
  outpaint: { run: 'Outpaint', hint: 'Upload an image; the sliders add canvas around it for the model to fill.' },
  edit: { run: 'Edit', hint: 'Upload an image; strength is how far the prompt may move it.' },
  vary: { run: 'Vary', hint: 'Upload an image to get variations of it (needs a model with a CLIP vision tower).' },
  interpolate: { run: 'Interpolate', hint: 'Frames that walk from one prompt to the other.' },
};
const finalStates = ['succeeded', 'failed', 'cancelled'];
// Uploads are scaled so that their shorter side is at most this (the model fits it to its own size anyway):
// requests stay small and the mask is painted at the size the server gets.
const uploadSide = Math.max(256, config.defaults.image_size * 2);

const page = {
  mode: 'generate',
  image: null,        // the uploaded image as a PNG data: URL
  maskPainted: false,
  busy: false,        // a job is being posted or followed: one at a time
  job: null,          // the running job: { id, controller }
};

// MARK: The API

/// An error to show: the server's sentence (or the page's own check), the field at fault and a heading.
class APIError extends Error {
  constructor(message, param, heading) {
    super(message);
    this.param = param || null;
    this.heading = heading || 'Not run:';
  }
}

function headers(json) {
  const h = {};
  const key = localStorage.getItem(keyStorage);
  if (key) h.Authorization = `Bearer ${key}`;
  if (json) h['Content-Type'] = 'application/json';
  return h;
}

/// fetch() with the key; an answer that is not 2xx throws an APIError with the server's own sentence.
async function api(method, path, body, signal) {
  let response;
  try {
    response = await fetch(path, { method, headers: headers(body !== undefined), body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (error) {
    if (error.name === 'AbortError') throw error;
    throw new APIError(`Cannot reach the server (${error.message}). Is paella serve still running?`);
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function errorOf(response) {
  let detail = null;
  try { detail = (await response.json()).error; } catch { /* not OpenAI's error shape */ }
  let message = detail && detail.message ? detail.message : `The server answered ${response.status} ${response.statusText}.`;
  if (response.status === 401) {
    message += ' Enter it under "API key" at the top of the page.';
    showKeyPanel(true);
  }
  return new APIError(message, detail && detail.param);
}

/// The server-sent events of a fetch() answer, one { name, data } at a time (data parsed from its JSON line).
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event:')) name = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) yield { name, data: JSON.parse(data.join('\n')) };
    }
  }
}

// MARK: Running a job

/// Posts `body`, shows its steps as they come and returns the job's final state.
async function runJob(body) {
  if (page.busy) return;
  page.busy = true;
  clearError();
  const controller = new AbortController();
  setRunning(true);
  showProgress('Waiting for the server…', 0);
  $('preview').removeAttribute('src');
  // On a phone the progress is below the form: bring it into view.
  if (window.matchMedia('(max-width: 759px)').matches) $('progress').scrollIntoView({ behavior: 'smooth', block: 'nearest' });
  try {
    const job = await (await api('POST', '/api/jobs', body)).json();
    page.job = { id: job.id, controller };
    const final = await follow(job, controller.signal);
    if (final.state === 'succeeded') {
      addCard(body, final);
      showProgress(`Done: ${final.images.length} image${final.images.length === 1 ? '' : 's'}.`, 1);
    } else if (final.state === 'failed') {
      const e = final.error || {};
      showError(new APIError(e.message || 'The server did not say why.', e.param, 'The job failed:'));
      showProgress('Failed.', 0);
    } else {
      showProgress('Cancelled.', 0);
    }
  } catch (error) {
    if (error.name === 'AbortError') showProgress('Cancelled.', 0);
    else { showError(error); $('progress').hidden = true; }
  } finally {
    page.busy = false;
    page.job = null;
    setRunning(false);
    refreshStatus();
  }
}

async function follow(job, signal) {
  showState(job);
  const response = await api('GET', `/api/jobs/${job.id}/events`, undefined, signal);
  for await (const event of serverEvents(response)) {
    if (event.name === 'progress') showStep(event.data);
    else if (event.name === 'state') {
      showState(event.data);
      if (finalStates.includes(event.data.state)) return event.data;
    } else if (finalStates.includes(event.name)) return event.data;
  }
  // The stream ended without the job's end (a proxy cut it): ask for its state instead.
  return (await api('GET', `/api/jobs/${job.id}`)).json();
}

async function cancelJob() {
  if (!page.job) return;
  const { id, controller } = page.job;
  try {
    await api('DELETE', `/api/jobs/${id}`);
  } catch (error) {
    // 409: it ended meanwhile, the event stream brings its end. Anything else: stop listening, which cancels it too.
    if (!/already ended/.test(error.message)) controller.abort();
  }
}

// MARK: The form

/// The JSON body of POST /api/jobs for the form as it is; a field the page can check itself throws an APIError.
function jobBody() {
  const mode = page.mode;
  const body = { mode };
  const text = (id) => $(id).value.trim();
  const number = (id, label) => {
    const raw = text(id);
    if (raw === '') return undefined;
    const value = Number(raw);
    if (!Number.isFinite(value)) throw new APIError(`${label} must be a number.`, id);
    return value;
  };
  if (['generate', 'inpaint', 'outpaint', 'edit'].includes(mode)) {
    body.prompt = text('prompt');
    if (!body.prompt) throw new APIError('Write a prompt first.', 'prompt');
  }
  if (mode === 'generate' && text('negative_prompt')) body.negative_prompt = text('negative_prompt');
  if (mode === 'interpolate') {
    body.from = text('from');
    body.to = text('to');
    if (!body.from) throw new APIError('Write the prompt to start from.', 'from');
    if (!body.to) throw new APIError('Write the prompt to end at.', 'to');
    body.frames = number('frames', 'Frames');
    body.method = $('method').value;
  }
  if (['inpaint', 'outpaint', 'edit', 'vary'].includes(mode)) {
    if (!page.image) throw new APIError('Upload an image first.', 'image');
    body.image = page.image;
  }
  if (mode === 'inpaint') {
    if (!page.maskPainted) throw new APIError('Paint over the part of the image to repaint first.', 'mask');
    body.mask = maskPNG();
  }
  if (mode === 'outpaint') {
    body.extend = {};
    for (const side of ['left', 'right', 'top', 'bottom']) body.extend[side] = Number($(`extend-${side}`).value);
  }
  if (mode === 'edit') body.strength = Number($('strength').value);
  for (const [id, label] of [['steps', 'Steps'], ['guidance', 'Guidance'], ['seed', 'Seed']]) {
    const value = number(id, label);
    if (value !== undefined) body[id] = value;
  }
  if (mode !== 'interpolate') body.n = number('n', 'Count');
  const temperature = text('temperature');
  if (temperature) {
    const values = temperature.split(/[\s,;]+/).filter(Boolean).map(Number);
    if (values.length < 1 || values.length > 2 || !values.every((t) => Number.isFinite(t) && t > 0)) {
      throw new APIError('Temperature takes one positive number, or two (the first and last step\'s): 0.7, 0.3.', 'temperature');
    }
    body.temperature = values;
  }
  for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key];
  return body;
}

function setMode(mode) {
  page.mode = mode;
  for (const tab of document.querySelectorAll('[role="tab"]')) tab.setAttribute('aria-selected', String(tab.dataset.mode === mode));
  for (const element of document.querySelectorAll('[data-modes]')) element.hidden = !element.dataset.modes.split(' ').includes(mode);
  $('run').textContent = modes[mode].run;
  $('mode-hint').textContent = modes[mode].hint;
  showDefaults();
  layoutFrame();
  clearError();
}

/// The model's defaults for this mode as the placeholders of empty settings.
function showDefaults() {
  const d = config.defaults[page.mode] || config.defaults.generate;
  $('steps').placeholder = d.steps;
  $('guidance').placeholder = d.guidance_scale;
  $('temperature').placeholder = d.temperature_range.join(', ');
}

/// Fills the form from a job body (a gallery card's), with `seed`.
function fillForm(body, seed) {
  setMode(body.mode);
  const set = (id, value) => { if (value !== undefined) $(id).value = value; };
  set('prompt', body.prompt);
  set('negative_prompt', body.negative_prompt || '');
  set('from', body.from);
  set('to', body.to);
  set('frames', body.frames);
  set('method', body.method);
  set('strength', body.strength);
  set('steps', body.steps ?? '');
  set('guidance', body.guidance ?? '');
  set('temperature', body.temperature ? body.temperature.join(', ') : '');
  set('n', body.n ?? 1);
  set('seed', seed);
  showOutputs();
}

// MARK: Upload, mask and borders

async function loadImage(blob) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(blob);
  } catch {
    throw new APIError('This file is not an image the browser can read; upload a PNG or JPEG.', 'image');
  }
  const scale = Math.min(1, uploadSide / Math.min(bitmap.width, bitmap.height));
  const width = Math.max(1, Math.round(bitmap.width * scale)), height = Math.max(1, Math.round(bitmap.height * scale));
  const photo = $('photo'), mask = $('mask');
  photo.width = mask.width = width;
  photo.height = mask.height = height;
  photo.getContext('2d').drawImage(bitmap, 0, 0, width, height);
  bitmap.close();
  page.image = photo.toDataURL('image/png');
  clearMask();
  $('frame').hidden = false;
  $('stage').dataset.loaded = 'true';
  layoutFrame();
}

function clearMask() {
  const mask = $('mask');
  mask.getContext('2d').clearRect(0, 0, mask.width, mask.height);
  page.maskPainted = false;
}

/// The painted strokes as the server's mask: the image's size, transparent where it repaints, opaque black elsewhere.
function maskPNG() {
  const mask = $('mask');
  const out = document.createElement('canvas');
  out.width = mask.width;
  out.height = mask.height;
  const g = out.getContext('2d');
  g.fillStyle = '#000';
  g.fillRect(0, 0, out.width, out.height);
  g.globalCompositeOperation = 'destination-out';
  g.drawImage(mask, 0, 0);
  return out.toDataURL('image/png');
}

function setUpBrush() {
  const mask = $('mask');
  let last = null;
  const point = (event) => {
    const r = mask.getBoundingClientRect();
    return { x: (event.clientX - r.left) * mask.width / r.width, y: (event.clientY - r.top) * mask.height / r.height, scale: mask.width / r.width };
  };
  const stroke = (from, to) => {
    const g = mask.getContext('2d');
    g.strokeStyle = g.fillStyle = '#ff2d6f';
    g.lineCap = g.lineJoin = 'round';
    g.lineWidth = Number($('brush').value) * to.scale;
    g.beginPath();
    g.moveTo(from.x, from.y);
    g.lineTo(to.x + 0.01, to.y);
    g.stroke();
    page.maskPainted = true;
  };
  mask.addEventListener('pointerdown', (event) => {
    if (event.button !== 0) return;
    mask.setPointerCapture(event.pointerId);
    last = point(event);
    stroke(last, last);
    event.preventDefault();
  });
  mask.addEventListener('pointermove', (event) => {
    if (!last) return;
    const p = point(event);
    stroke(last, p);
    last = p;
  });
  for (const name of ['pointerup', 'pointercancel']) mask.addEventListener(name, () => { last = null; });
}

/// Outpainting shows the added borders around the image, to scale; other modes show the image alone.
function layoutFrame() {
  const frame = $('frame'), photo = $('photo');
  const outpaint = page.mode === 'outpaint' && photo.width > 0;
  frame.classList.toggle('outpaint', outpaint);
  if (!outpaint) { frame.style.padding = '0'; return; }
  // The model fits the image's shorter side to its size; the borders are pixels at that size.
  const fit = config.defaults.image_size / Math.min(photo.width, photo.height);
  const w = photo.width * fit;
  const e = Object.fromEntries(['left', 'right', 'top', 'bottom'].map((side) => [side, Number($(`extend-${side}`).value)]));
  const total = w + e.left + e.right;
  // Padding percentages are of the frame's width, on every side.
  frame.style.padding = ['top', 'right', 'bottom', 'left'].map((side) => `${(100 * e[side] / total).toFixed(3)}%`).join(' ');
}

// MARK: Showing things

function showOutputs() {
  for (const output of document.querySelectorAll('output[for]')) {
    const input = $(output.htmlFor.value);
    if (input) output.textContent = input.id === 'brush' ? `${input.value} px` : input.value;
  }
}

function setRunning(running) {
  $('run').disabled = running;
  $('cancel').hidden = !running;
}

function showProgress(label, fraction) {
  $('progress').hidden = false;
  $('progress-label').textContent = label;
  $('meter-fill').style.width = `${Math.round(100 * fraction)}%`;
}

function showState(job) {
  if (job.state === 'queued') showProgress('Queued: waiting for the jobs before it.', 0);
  else if (job.state === 'running') showProgress('Running…', job.total_steps ? job.step / job.total_steps : 0);
}

const stageNames = { encoding: 'Encoding the image', sampling: 'Sampling', decoding: 'Decoding' };

function showStep(p) {
  const fraction = p.total_steps ? p.step / p.total_steps : 0;
  const stage = stageNames[p.stage] || p.stage;
  const steps = p.stage === 'sampling' ? ` step ${p.step} of ${p.total_steps}` : '';
  showProgress(`${stage}${steps} · ${p.elapsed.toFixed(1)} s`, fraction);
  if (p.preview) {
    $('preview').src = p.preview;
    $('preview').dataset.steps = String(Number($('preview').dataset.steps || 0) + 1);
  }
}

function showError(error) {
  const box = $('error');
  box.replaceChildren();
  const strong = document.createElement('strong');
  strong.textContent = error instanceof APIError ? error.heading : 'Something went wrong:';
  box.append(strong, document.createTextNode(error.message || String(error)));
  box.hidden = false;
  const field = error.param && document.getElementById(fieldOf(error.param));
  if (field) {
    field.setAttribute('aria-invalid', 'true');
    if (!field.closest('[hidden]')) field.focus();
  }
}

/// The form control a server `param` names.
function fieldOf(param) {
  return { image: 'upload', mask: 'mask', size: 'upload', extend: 'extend-left' }[param] || param;
}

function clearError() {
  $('error').hidden = true;
  for (const field of document.querySelectorAll('[aria-invalid]')) field.removeAttribute('aria-invalid');
}

async function refreshStatus() {
  const status = $('status');
  try {
    const response = await fetch('/healthz');
    const health = await response.json();
    const busy = health.running + health.queued;
    status.textContent = `${health.model} · ${health.status === 'ok' ? (busy ? `${health.running} running, ${health.queued} queued` : 'ready') : 'shutting down'}`;
    status.classList.toggle('bad', health.status !== 'ok');
  } catch {
    status.textContent = `${config.model} · server unreachable`;
    status.classList.add('bad');
  }
}

function showKeyPanel(open) {
  $('key-panel').hidden = !open;
  $('key-toggle').setAttribute('aria-expanded', String(open));
  if (open) $('key').focus();
}

// MARK: The gallery

function describe(p) {
  const rows = [['Seed', p.seed], ['Steps', p.startingStep ? `${p.steps - p.startingStep} of ${p.steps}` : p.steps],
    ['Guidance', p.guidanceScale], ['Temperature', (p.temperatureRange || []).join(' → ')], ['Size', `${p.width} × ${p.height}`]];
  if (p.negativePrompt) rows.splice(0, 0, ['Not', p.negativePrompt]);
  if (p.strength !== undefined) rows.push(['Strength', p.strength]);
  if (p.frames !== undefined) rows.push(['Frames', `${p.frames} (${p.method})`]);
  if (p.extend) rows.push(['Added', ['left', 'right', 'top', 'bottom'].map((s) => `${s} ${p.extend[s] || 0}`).join(', ')]);
  return rows;
}

function element(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function addCard(body, job) {
  const p = job.parameters;
  const card = element('li', 'card');
  card.dataset.mode = job.mode;
  const images = element('div', 'images');
  // One image fills the card, up to four share two columns, an interpolation's frames take as many as fit.
  if (job.images.length <= 4) images.style.gridTemplateColumns = `repeat(${Math.min(job.images.length, 2)}, minmax(0, 1fr))`;
  job.images.forEach((link, i) => {
    const figure = element('figure');
    const open = element('a');
    open.href = link;
    open.target = '_blank';
    const img = element('img');
    img.src = link;
    img.alt = p.prompt || (p.prompts || []).join(' → ') || `${job.mode} result`;
    img.addEventListener('load', () => img.classList.toggle('small', img.naturalWidth < 200));
    open.append(img);
    const download = element('a', 'download', 'PNG');
    download.href = link;
    download.download = `paella-${job.mode}-${p.seed}-${i + 1}.png`;
    download.title = 'Download this image with its parameters';
    figure.append(open, download);
    images.append(figure);
  });
  const what = element('p', 'what');
  what.append(element('span', 'mode', job.mode), document.createTextNode(p.prompt || (p.prompts || []).join(' → ') || 'variations'));
  const list = element('dl');
  for (const [name, value] of describe(p)) list.append(element('dt', '', name), element('dd', '', String(value)));
  const buttons = element('div', 'buttons');
  const rerun = element('button', 'ghost rerun', `Re-run with seed ${p.seed}`);
  rerun.type = 'button';
  rerun.addEventListener('click', () => {
    fillForm(body, p.seed);
    runJob({ ...body, seed: p.seed });
  });
  const reuse = element('button', 'ghost', 'Use as input');
  reuse.type = 'button';
  reuse.title = 'Load the first image into the upload of the image modes';
  reuse.addEventListener('click', async () => {
    try {
      await loadImage(await (await fetch(job.images[0])).blob());
      if (!['inpaint', 'outpaint', 'edit', 'vary'].includes(page.mode)) setMode('inpaint');
    } catch (error) { showError(error); }
  });
  buttons.append(rerun, reuse);
  card.append(images, what, list, buttons);
  $('gallery').prepend(card);
  $('empty').hidden = true;
}

// MARK: Start

function start() {
  const limits = config.limits;
  $('steps').max = limits.max_steps;
  $('n').max = limits.max_images;
  $('frames').max = limits.max_frames;
  for (const id of ['prompt', 'negative_prompt', 'from', 'to']) $(id).maxLength = limits.max_prompt_length;
  const side = config.defaults.image_size;
  for (const s of ['left', 'right', 'top', 'bottom']) {
    const input = $(`extend-${s}`);
    input.max = side;
    input.step = Math.max(1, side / 16);
    input.value = s === 'left' || s === 'right' ? side / 4 : 0;
    input.addEventListener('input', layoutFrame);
  }
  $('strength').value = config.defaults.edit_strength;
  document.title = `Paella · ${config.model}`;
  $('status').textContent = config.model;

  $('key').value = localStorage.getItem(keyStorage) || '';
  $('key').addEventListener('input', () => {
    const key = $('key').value.trim();
    if (key) localStorage.setItem(keyStorage, key); else localStorage.removeItem(keyStorage);
  });
  $('key-toggle').addEventListener('click', () => showKeyPanel($('key-panel').hidden));
  if (config.auth && !localStorage.getItem(keyStorage)) showKeyPanel(true);

  for (const tab of document.querySelectorAll('[role="tab"]')) tab.addEventListener('click', () => setMode(tab.dataset.mode));
  $('upload').addEventListener('change', async () => {
    const file = $('upload').files[0];
    if (!file) return;
    clearError();
    try { await loadImage(file); } catch (error) { showError(error); }
  });
  $('clear-mask').addEventListener('click', clearMask);
  for (const input of document.querySelectorAll('input[type="range"]')) input.addEventListener('input', showOutputs);
  for (const input of document.querySelectorAll('input, textarea')) input.addEventListener('input', () => input.removeAttribute('aria-invalid'));
  setUpBrush();
  $('form').addEventListener('submit', (event) => {
    event.preventDefault();
    if (page.busy) return;
    let body;
    try { body = jobBody(); } catch (error) { showError(error); return; }
    runJob(body);
  });
  $('prompt').addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) $('form').requestSubmit();
  });
  $('cancel').addEventListener('click', cancelJob);
  setMode('generate');
  showOutputs();
  refreshStatus();
}

start();
"""#
}
