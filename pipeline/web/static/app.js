// blindfill page: load a photo, show the damage the server found, edit the mask, repair, download.
// The HTTP contract is in the module docstring of pipeline/server.py.

const $ = (id) => document.getElementById(id);

const el = {
  fileInput: $('file-input'), fileName: $('file-name'), mode: $('mode'), brush: $('tool-brush'), eraser: $('tool-eraser'),
  brushSize: $('brush-size'), brushSizeValue: $('brush-size-value'),
  undo: $('undo'), redo: $('redo'), clear: $('clear'), maskFile: $('mask-file'),
  showMask: $('show-mask'), heatmap: $('heatmap'),
  format: $('format'), quality: $('quality'), qualityValue: $('quality-value'),
  repair: $('repair'), progress: $('progress'), status: $('status'),
  downloadResult: $('download-result'), downloadMask: $('download-mask'),
  error: $('error'), placeholder: $('placeholder'), placeholderText: $('placeholder-text'), editor: $('editor'), stage: $('stage'),
  photo: $('photo'), overlay: $('overlay'), heat: $('heat'), cursor: $('brush-cursor'), layers: $('layers'),
  result: $('result'), compare: $('compare'), before: $('compare-before'), after: $('compare-after'),
  divider: $('compare-divider'), slider: $('compare-slider'),
};

const HISTORY_LIMIT = 20;
const MASK_COLOR = 'rgb(255, 24, 24)';
// A few stops of the "inferno" colour map, interpolated into a 256-entry table.
const INFERNO = [[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21], [250, 193, 39], [252, 255, 164]];

const app = {
  file: null, stem: 'photo',
  info: null,              // /api/mask json of the current file: sizes and preview
  masks: {},               // server mode (blind | denoise) -> its starting mask, an Image
  mode: 'blind',           // the mode whose starting mask was applied last
  generation: 0,           // bumped per file: answers for an older file are dropped
  tool: 'brush', stroke: null, undoStack: [], redoStack: [],
  zoom: { z: 1, x: 0, y: 0 }, pan: null, spaceDown: false,  // the view: zoom and pan
  secondsPerMegapixel: null, resultUrl: null, maskUrl: null,
};

const overlayContext = el.overlay.getContext('2d', { willReadFrequently: true });

// -- state and messages ---------------------------------------------------------------------------

function setState(state) {
  document.body.dataset.state = state;
  updateControls();
}

function state() {
  return document.body.dataset.state;
}

function hasMask() {
  return app.info !== null && state() !== 'analysing' && state() !== 'empty';
}

function updateControls() {
  const editable = hasMask();
  el.repair.disabled = !editable || state() === 'repairing';
  el.mode.disabled = state() === 'analysing' || state() === 'repairing';
  el.clear.disabled = !editable;
  el.maskFile.disabled = !editable;
  el.undo.disabled = !editable || app.undoStack.length === 0;
  el.redo.disabled = !editable || app.redoStack.length === 0;
  el.stage.classList.toggle('editable', editable);
}

function showError(message) {
  const text = String(message).trim();
  el.error.textContent = text.charAt(0).toUpperCase() + text.slice(1);
  el.error.hidden = false;
  setState('error');
}

function clearError() {
  el.error.hidden = true;
}

function showStatus(text) {
  el.status.textContent = text;
}

// -- talking to the server ------------------------------------------------------------------------

async function errorMessage(response, status) {
  try {
    const body = response instanceof Blob ? JSON.parse(await response.text()) : response;
    if (body && body.error) return body.error;
  } catch {
    // not JSON: say the status instead
  }
  return `the server answered with status ${status}`;
}

// XMLHttpRequest rather than fetch: it reports upload progress.
function postForm(url, form, responseType, { onUploadProgress, onUploaded } = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', url);
    xhr.responseType = responseType;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onUploadProgress?.(e.loaded / e.total); };
    xhr.upload.onload = () => onUploaded?.();
    xhr.onload = async () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr);
      else reject(new Error(await errorMessage(xhr.response, xhr.status)));
    };
    xhr.onerror = () => reject(new Error('the server could not be reached; is it still running?'));
    xhr.send(form);
  });
}

async function checkHealth() {
  try {
    const response = await fetch('/api/health');
    const health = await response.json();
    app.secondsPerMegapixel = health.seconds_per_megapixel ?? null;
    if (health.status !== 'ok') showError(`the model failed to load: ${health.error || 'see the server log'}`);
  } catch {
    showError('the server could not be reached; is it still running?');
  }
}

function requestMask(file, serverMode) {
  const form = new FormData();
  form.append('image', file, file.name);
  form.append('mode', serverMode);
  form.append('format', 'json');
  return postForm('/api/mask', form, 'json', { onUploadProgress: showUploadProgress, onUploaded: showWaiting })
    .then((xhr) => xhr.response ?? Promise.reject(new Error('the server sent an answer this page cannot read')));
}

// -- images and canvases --------------------------------------------------------------------------

async function loadImage(src) {
  const image = new Image();
  image.src = src;
  await image.decode();
  return image;
}

// The pixels of a gray image drawn at the editing size (a temporary canvas, released at once).
function grayPixels(image, width, height) {
  const canvas = Object.assign(document.createElement('canvas'), { width, height });
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(image, 0, 0, width, height);
  const pixels = context.getImageData(0, 0, width, height);
  canvas.width = canvas.height = 0;
  return pixels;
}

function colorRamp(stops) {
  const table = [];
  for (let v = 0; v < 256; v++) {
    const x = (v / 255) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2);
    const t = x - i;
    table.push(stops[i].map((c, k) => Math.round(c + t * (stops[i + 1][k] - c))));
  }
  return table;
}

// One RGBA colour per gray level: the mask is red with alpha = hole weight; the heat map fades
// out where the model is unsure and is transparent at 0.
const MASK_COLORS = Array.from({ length: 256 }, (_, v) => [255, 24, 24, v]);
const HEAT_COLORS = colorRamp(INFERNO).map((rgb, v) => [...rgb, Math.min(255, 3 * v)]);

function recolor(gray, colors) {
  const out = new ImageData(gray.width, gray.height);
  for (let i = 0; i < gray.data.length; i += 4) out.data.set(colors[gray.data[i]], i);
  return out;
}

// The stage is sized in CSS pixels to fit the viewer; the canvases keep the editing size inside.
function fitStage() {
  if (!app.info) return;
  const { view_width: w, view_height: h } = app.info;
  const maxWidth = el.editor.clientWidth || el.editor.parentElement.clientWidth;
  const top = el.editor.getBoundingClientRect().top + window.scrollY;
  const maxHeight = Math.max(240, window.innerHeight - top - 16);
  const scale = Math.min(maxWidth / w, maxHeight / h);
  for (const box of [el.stage, el.compare]) {
    box.style.width = `${Math.floor(w * scale)}px`;
    box.style.height = `${Math.floor(h * scale)}px`;
  }
  panBy(0, 0); // keep the zoomed photo covering the resized stage
}

// -- zoom and pan: the layers are scaled by z and moved by (x, y) CSS pixels inside the stage, which
// keeps its place and size; brush points are read through the scaled overlay, so painting stays exact.

const MAX_ZOOM = 16;

function applyZoom() {
  const { z, x, y } = app.zoom;
  el.layers.style.transform = `translate(${x}px, ${y}px) scale(${z})`;
}

// Zoom by `factor` keeping the stage point (px, py) where it is; the photo always covers the stage.
function zoomAt(factor, px, py) {
  const { z, x, y } = app.zoom;
  const next = Math.min(MAX_ZOOM, Math.max(1, z * factor));
  app.zoom = { z: next, x: px - ((px - x) * next) / z, y: py - ((py - y) * next) / z };
  panBy(0, 0);
}

function panBy(dx, dy) {
  const { z, x, y } = app.zoom;
  const { width, height } = el.stage.getBoundingClientRect();
  const clamp = (v, size) => Math.min(0, Math.max(size - size * z, v));
  app.zoom = { z, x: clamp(x + dx, width), y: clamp(y + dy, height) };
  applyZoom();
}

function resetZoom() {
  app.zoom = { z: 1, x: 0, y: 0 };
  applyZoom();
}

function zoomWithWheel(event) {
  if (!app.info) return;
  event.preventDefault();
  const rect = el.stage.getBoundingClientRect();
  zoomAt(event.deltaY < 0 ? 1.25 : 1 / 1.25, event.clientX - rect.left, event.clientY - rect.top);
}

function zoomAtCentre(factor) {
  const { width, height } = el.stage.getBoundingClientRect();
  zoomAt(factor, width / 2, height / 2);
}

function startPan(event) {
  event.preventDefault();
  el.stage.setPointerCapture(event.pointerId);
  app.pan = { pointerId: event.pointerId, x: event.clientX, y: event.clientY };
  el.stage.classList.add('panning');
}

function updateLayers() {
  el.heat.hidden = !el.heatmap.checked;
  el.overlay.hidden = !el.showMask.checked || el.heatmap.checked;
}

// -- mask history ---------------------------------------------------------------------------------

function currentMask() {
  return overlayContext.getImageData(0, 0, el.overlay.width, el.overlay.height);
}

function remember() {
  app.undoStack.push(currentMask());
  if (app.undoStack.length > HISTORY_LIMIT) app.undoStack.shift();
  app.redoStack.length = 0;
  updateControls();
}

// Undo and redo: the current mask goes onto one stack, the top of the other comes back.
function restore(from, to) {
  if (!hasMask() || from.length === 0) return;
  to.push(currentMask());
  overlayContext.putImageData(from.pop(), 0, 0);
  updateControls();
}

const undo = () => restore(app.undoStack, app.redoStack);
const redo = () => restore(app.redoStack, app.undoStack);

function clearMask() {
  if (!hasMask()) return;
  remember();
  overlayContext.clearRect(0, 0, el.overlay.width, el.overlay.height);
}

// A mask file as the hole, read as the command line reads one (data/io.py, read_mask): with
// transparency, opaque = hole; a gray image, white = hole; a colour photo, its pure-green paint.
function holeFromMaskImage(image, width, height) {
  const canvas = Object.assign(document.createElement('canvas'), { width, height });
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(image, 0, 0, width, height);
  const { data } = context.getImageData(0, 0, width, height);
  canvas.width = canvas.height = 0;
  let transparent = false;
  let colour = false;
  for (let i = 0; i < data.length; i += 4) {
    transparent ||= data[i + 3] < 255;
    colour ||= Math.max(data[i], data[i + 1], data[i + 2]) - Math.min(data[i], data[i + 1], data[i + 2]) > 12;
  }
  const gray = new ImageData(width, height);
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    let hole;
    if (transparent) hole = a > 127;
    else if (colour) hole = r <= 40 && g >= 215 && b <= 40;
    else hole = (r + g + b) / 3 > 127;
    gray.data.fill(hole ? 255 : 0, i, i + 4);
  }
  return gray;
}

async function loadMaskFile(file) {
  if (!file || !hasMask()) return;
  clearError();
  const url = URL.createObjectURL(file);
  try {
    const image = await loadImage(url);
    const { width, height, view_width: w, view_height: h } = app.info;
    if (image.naturalWidth !== width || image.naturalHeight !== height) {
      showError(`the mask ${file.name} is ${image.naturalWidth} × ${image.naturalHeight}, the photo ${width} × ${height}: they must be the same size`);
      return;
    }
    remember();
    el.mode.value = 'masked';
    app.mode = 'masked';
    overlayContext.putImageData(recolor(holeFromMaskImage(image, w, h), MASK_COLORS), 0, 0);
    showStatus(`The hole is ${file.name}: correct it with the brush, or Repair.`);
  } catch (err) {
    showError(`could not read the mask ${file.name}: ${err.message}`);
  } finally {
    URL.revokeObjectURL(url);
    el.maskFile.value = '';
  }
}

// -- loading a photo and its starting mask ----------------------------------------------------------

function serverModeOf(mode) {
  return mode === 'denoise' ? 'denoise' : 'blind';
}

async function loadFile(file) {
  if (!file) return;
  const generation = ++app.generation;
  Object.assign(app, { file, stem: stemOf(file.name), info: null, masks: {}, undoStack: [], redoStack: [] });
  clearError();
  hideResult();
  el.fileName.textContent = file.name;
  el.fileName.hidden = false;
  el.editor.hidden = true;
  el.placeholder.hidden = false;
  el.placeholderText.textContent = 'Looking for the damage…';
  setState('analysing');
  try {
    const serverMode = serverModeOf(el.mode.value);
    const info = await requestMask(file, serverMode);
    const [preview, mask, predicted] = await Promise.all([info.preview, info.mask, info.predicted].map(loadImage));
    if (generation !== app.generation) return;
    app.info = info;
    app.masks[serverMode] = mask;
    app.masks.denoise = predicted; // denoise mode repairs with the soft mask as predicted: no second request
    showPhoto(preview, predicted);
    applyStartingMask(el.mode.value);
    const found = (100 * info.hole_fraction).toFixed(1);
    showStatus(`${info.width} × ${info.height} px. Damage found on ${found} % of the photo (${info.seconds.toFixed(1)} s).`);
    setState('ready');
  } catch (err) {
    if (generation !== app.generation) return;
    el.placeholderText.textContent = 'Choose or drop another photo.';
    showStatus('');
    showError(`could not analyse ${file.name}: ${err.message}`);
  } finally {
    if (generation === app.generation) hideProgress();
  }
}

function showPhoto(preview, predicted) {
  const { view_width: w, view_height: h } = app.info;
  for (const canvas of [el.photo, el.overlay, el.heat]) Object.assign(canvas, { width: w, height: h });
  resetZoom();
  el.photo.getContext('2d').drawImage(preview, 0, 0, w, h);
  el.heat.getContext('2d').putImageData(recolor(grayPixels(predicted, w, h), HEAT_COLORS), 0, 0);
  el.before.src = app.info.preview;
  el.placeholder.hidden = true;
  el.editor.hidden = false;
  updateLayers();
  fitStage();
}

function applyStartingMask(mode) {
  const { view_width: w, view_height: h } = app.info;
  app.mode = mode;
  overlayContext.clearRect(0, 0, w, h);
  if (mode === 'masked') return;
  overlayContext.putImageData(recolor(grayPixels(app.masks[serverModeOf(mode)], w, h), MASK_COLORS), 0, 0);
}

// Changing mode replaces the mask as one undoable step; the history is kept.
async function changeMode() {
  if (!app.info) return;
  const mode = el.mode.value;
  const serverMode = serverModeOf(mode);
  const generation = app.generation;
  const previous = state();
  if (mode !== 'masked' && !app.masks[serverMode]) {
    clearError();
    setState('analysing');
    try {
      const info = await requestMask(app.file, serverMode);
      const mask = await loadImage(info.mask);
      if (generation !== app.generation) return;
      app.masks[serverMode] = mask;
    } catch (err) {
      if (generation !== app.generation) return;
      hideProgress();
      el.mode.value = app.mode;
      showError(`could not find the ${serverMode} mask: ${err.message}`);
      return;
    }
    hideProgress();
  }
  setState(previous === 'analysing' || previous === 'error' ? 'ready' : previous);
  remember();
  applyStartingMask(mode);
}

function stemOf(name) {
  const stem = name.replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9_-]+/g, '_').replace(/^_+|_+$/g, '');
  return stem.slice(0, 80) || 'photo';
}

// -- painting -------------------------------------------------------------------------------------

function setTool(tool) {
  app.tool = tool;
  el.brush.setAttribute('aria-pressed', String(tool === 'brush'));
  el.eraser.setAttribute('aria-pressed', String(tool === 'eraser'));
  el.stage.classList.toggle('erasing', tool === 'eraser');
}

function brushSize() {
  return Number(el.brushSize.value);
}

function setBrushSize(size) {
  el.brushSize.value = String(Math.max(1, Math.min(200, Math.round(size))));
  el.brushSizeValue.textContent = el.brushSize.value;
}

function canvasPoint(event) {
  const rect = el.overlay.getBoundingClientRect();
  return {
    x: ((event.clientX - rect.left) * el.overlay.width) / rect.width,
    y: ((event.clientY - rect.top) * el.overlay.height) / rect.height,
  };
}

function prepareBrush() {
  const ctx = overlayContext;
  ctx.globalCompositeOperation = app.tool === 'eraser' ? 'destination-out' : 'source-over';
  ctx.strokeStyle = ctx.fillStyle = MASK_COLOR;
  ctx.lineWidth = brushSize();
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
}

function paintSegment(from, to) {
  const ctx = overlayContext;
  ctx.beginPath();
  if (from.x === to.x && from.y === to.y) { // a zero-length line draws nothing: a dot instead
    ctx.arc(to.x, to.y, brushSize() / 2, 0, 2 * Math.PI);
    ctx.fill();
  } else {
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x, to.y);
    ctx.stroke();
  }
}

function startStroke(event) {
  if (app.info && (event.button === 1 || (event.button === 0 && app.spaceDown))) return startPan(event);
  if (!hasMask() || event.button !== 0) return;
  event.preventDefault();
  el.stage.setPointerCapture(event.pointerId);
  remember();
  prepareBrush();
  const point = canvasPoint(event);
  paintSegment(point, point);
  app.stroke = { pointerId: event.pointerId, last: point };
}

function continueStroke(event) {
  if (app.pan && event.pointerId === app.pan.pointerId) {
    panBy(event.clientX - app.pan.x, event.clientY - app.pan.y);
    Object.assign(app.pan, { x: event.clientX, y: event.clientY });
    return;
  }
  moveCursor(event);
  if (!app.stroke || event.pointerId !== app.stroke.pointerId) return;
  const samples = event.getCoalescedEvents?.() ?? [];
  for (const sample of samples.length ? samples : [event]) {
    const point = canvasPoint(sample);
    paintSegment(app.stroke.last, point);
    app.stroke.last = point;
  }
}

function endStroke(event) {
  if (app.pan && event.pointerId === app.pan.pointerId) {
    app.pan = null;
    el.stage.classList.toggle('panning', Boolean(app.spaceDown));
  }
  if (app.stroke && event.pointerId === app.stroke.pointerId) app.stroke = null;
  overlayContext.globalCompositeOperation = 'source-over';
}

function moveCursor(event) {
  if (!hasMask() || event.pointerType === 'touch') {
    el.cursor.hidden = true;
    return;
  }
  const rect = el.stage.getBoundingClientRect();
  const diameter = (brushSize() * el.overlay.getBoundingClientRect().width) / el.overlay.width; // zoomed too
  const [left, top] = [event.clientX - rect.left, event.clientY - rect.top];
  Object.assign(el.cursor.style, { width: `${diameter}px`, height: `${diameter}px`, left: `${left}px`, top: `${top}px` });
  el.cursor.hidden = false;
}

// -- repair ---------------------------------------------------------------------------------------

// The mask at the image's full size: gray = the overlay's alpha (255 = full hole), nearest-neighbour
// upscaled so that what is seen is what gets repaired. The big canvas is released right after.
async function fullSizeMask() {
  const { width, height } = app.info;
  const canvas = Object.assign(document.createElement('canvas'), { width, height });
  try {
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(el.overlay, 0, 0, width, height);
    const pixels = ctx.getImageData(0, 0, width, height);
    const d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      d[i] = d[i + 1] = d[i + 2] = d[i + 3];
      d[i + 3] = 255;
    }
    ctx.putImageData(pixels, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, 'image/png'));
    if (!blob) throw new Error('the browser could not build the mask image (the photo may be too large for it)');
    return blob;
  } finally {
    canvas.width = canvas.height = 0;
  }
}

function repairForm(maskBlob) {
  const form = new FormData();
  form.append('image', app.file, app.file.name);
  form.append('mask', maskBlob, `${app.stem}_mask.png`);
  const fields = { mode: 'masked', soft: 'true', format: el.format.value, quality: el.quality.value, keep_metadata: 'true' };
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  return form;
}

async function repair() {
  if (!hasMask() || state() === 'repairing') return;
  const generation = app.generation;
  clearError();
  setState('repairing');
  showStatus('Preparing the mask…');
  try {
    const maskBlob = await fullSizeMask();
    const megapixels = (app.info.width * app.info.height) / 1e6;
    const xhr = await postForm('/api/inpaint', repairForm(maskBlob), 'blob', {
      onUploadProgress: showUploadProgress,
      onUploaded: () => showWaiting(megapixels),
    });
    if (generation !== app.generation) return;
    const seconds = Number(xhr.getResponseHeader('X-Blindfill-Seconds'));
    if (seconds > 0) updateEstimate(seconds / Math.max(megapixels, 0.01));
    showResult(xhr.response, resultName(xhr), maskBlob);
    showStatus(`Repaired in ${seconds > 0 ? seconds.toFixed(1) : '?'} s: the result and its downloads are below the photo.`);
    setState('done');
  } catch (err) {
    if (generation !== app.generation) return;
    showStatus('');
    showError(`could not repair the photo: ${err.message}`);
  } finally {
    if (generation === app.generation) hideProgress();
  }
}

// Health is read once; later repairs refine its rate the way the server does (a running mean).
function updateEstimate(rate) {
  const old = app.secondsPerMegapixel;
  app.secondsPerMegapixel = old === null ? rate : 0.5 * (old + rate);
}

function resultName(xhr) {
  const disposition = xhr.getResponseHeader('Content-Disposition') || '';
  const match = disposition.match(/filename\*?=(?:UTF-8'')?"?([^";]+)"?/i);
  if (match) return decodeURIComponent(match[1]);
  return `${app.stem}_repaired.${el.format.value === 'jpeg' ? 'jpg' : 'png'}`;
}

// -- progress -------------------------------------------------------------------------------------

let progressTimer = null;

function showUploadProgress(fraction) {
  el.progress.hidden = false;
  el.progress.max = 1;
  el.progress.value = fraction;
  showStatus(`Uploading… ${Math.round(fraction * 100)} %`);
}

// After the upload: the model's time, estimated from the server's last runs when it has any.
function showWaiting(megapixels) {
  clearInterval(progressTimer);
  el.progress.hidden = false;
  const estimate = megapixels && app.secondsPerMegapixel ? app.secondsPerMegapixel * megapixels : null;
  const verb = state() === 'repairing' ? 'Repairing' : 'Looking for the damage';
  const started = performance.now();
  if (estimate) el.progress.max = estimate;
  else el.progress.removeAttribute('value');
  const tick = () => {
    const elapsed = (performance.now() - started) / 1000;
    if (estimate) {
      el.progress.value = Math.min(elapsed, estimate * 0.97);
      showStatus(`${verb}… ${elapsed.toFixed(0)} s of about ${Math.max(1, Math.round(estimate))} s`);
    } else {
      showStatus(`${verb}… ${elapsed.toFixed(0)} s`);
    }
  };
  tick();
  progressTimer = setInterval(tick, 250);
}

function hideProgress() {
  clearInterval(progressTimer);
  el.progress.hidden = true;
  el.progress.max = 1;
  el.progress.value = 0;
}

// -- result and downloads -------------------------------------------------------------------------

function replaceUrl(key, blob) {
  if (app[key]) URL.revokeObjectURL(app[key]);
  app[key] = blob ? URL.createObjectURL(blob) : null;
  return app[key];
}

function showResult(resultBlob, filename, maskBlob) {
  el.after.src = replaceUrl('resultUrl', resultBlob);
  el.downloadResult.href = app.resultUrl;
  el.downloadResult.download = filename;
  el.downloadMask.href = replaceUrl('maskUrl', maskBlob);
  el.downloadMask.download = `${app.stem}_mask.png`;
  el.downloadResult.hidden = el.downloadMask.hidden = false;
  el.result.hidden = false;
  fitStage();
  updateComparison();
  el.result.scrollIntoView({ behavior: 'smooth', block: 'nearest' });
}

function hideResult() {
  el.result.hidden = true;
  el.downloadResult.hidden = el.downloadMask.hidden = true;
  replaceUrl('resultUrl', null);
  replaceUrl('maskUrl', null);
}

// Pressing or dragging on the comparison moves its line there, like the slider.
function dragComparison(event) {
  if (event.type === 'pointermove' && !event.buttons) return;
  const rect = el.compare.getBoundingClientRect();
  el.slider.value = String(Math.round((100 * (event.clientX - rect.left)) / rect.width));
  updateComparison();
}

function updateComparison() {
  const shown = Number(el.slider.value);
  el.after.style.clipPath = `inset(0 ${100 - shown}% 0 0)`;
  el.divider.style.left = `${shown}%`;
}

// -- input wiring ---------------------------------------------------------------------------------

const TEXT_FIELDS = 'textarea, [contenteditable], input:not([type="range"], [type="checkbox"], [type="file"])';

function onKey(event) {
  if (event.target.matches?.(TEXT_FIELDS) || event.altKey) return;
  const command = event.ctrlKey || event.metaKey;
  const key = event.key.toLowerCase();
  const actions = command
    ? { z: event.shiftKey ? redo : undo, y: redo }
    : {
      b: () => setTool('brush'),
      e: () => setTool('eraser'),
      '[': () => setBrushSize(brushSize() - Math.max(1, brushSize() * 0.15)),
      ']': () => setBrushSize(brushSize() + Math.max(1, brushSize() * 0.15)),
      h: () => toggle(el.heatmap),
      '+': () => zoomAtCentre(1.25),
      '=': () => zoomAtCentre(1.25),
      '-': () => zoomAtCentre(1 / 1.25),
      0: resetZoom,
      m: () => toggle(el.showMask),
      // Enter on a button, link, list or file chooser does its own thing.
      enter: event.target.matches?.('button, a, select, label, input[type="file"]') ? null : repair,
    };
  const action = actions[key];
  if (!action) return;
  event.preventDefault();
  action();
}

function toggle(checkbox) {
  checkbox.checked = !checkbox.checked;
  updateLayers();
}

function wireDropping() {
  let depth = 0; // dragenter/leave fire for every child element
  document.addEventListener('dragenter', (e) => { e.preventDefault(); depth++; document.body.classList.add('dragging'); });
  document.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; document.body.classList.remove('dragging'); } });
  document.addEventListener('dragover', (e) => e.preventDefault());
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    depth = 0;
    document.body.classList.remove('dragging');
    loadFile(e.dataTransfer?.files?.[0]);
  });
}

function wire() {
  wireDropping();
  el.fileInput.addEventListener('change', () => {
    loadFile(el.fileInput.files[0]);
    el.fileInput.value = ''; // choosing the same file again reloads it
  });
  el.mode.addEventListener('change', changeMode);
  el.maskFile.addEventListener('change', () => loadMaskFile(el.maskFile.files[0]));
  const clicks = { brush: () => setTool('brush'), eraser: () => setTool('eraser'), undo, redo, clear: clearMask, repair };
  for (const [name, handler] of Object.entries(clicks)) el[name].addEventListener('click', handler);
  el.brushSize.addEventListener('input', () => setBrushSize(brushSize()));
  el.showMask.addEventListener('change', updateLayers);
  el.heatmap.addEventListener('change', updateLayers);
  el.format.addEventListener('change', () => { el.quality.disabled = el.format.value !== 'jpeg'; });
  el.quality.addEventListener('input', () => { el.qualityValue.textContent = el.quality.value; });
  el.slider.addEventListener('input', updateComparison);
  el.compare.addEventListener('pointerdown', dragComparison);
  el.compare.addEventListener('pointermove', dragComparison);
  const pointer = { pointerdown: startStroke, pointermove: continueStroke, pointerup: endStroke, pointercancel: endStroke };
  for (const [type, handler] of Object.entries(pointer)) el.stage.addEventListener(type, handler);
  el.stage.addEventListener('pointerleave', () => { el.cursor.hidden = true; });
  document.addEventListener('keydown', onKey);
  el.stage.addEventListener('wheel', zoomWithWheel, { passive: false });
  const space = (down) => (event) => {
    if (event.key !== ' ' || event.target.matches?.(TEXT_FIELDS) || event.target.matches?.('button, select')) return;
    event.preventDefault();
    app.spaceDown = down;
    el.stage.classList.toggle('panning', down || Boolean(app.pan));
  };
  document.addEventListener('keydown', space(true));
  document.addEventListener('keyup', space(false));
  new ResizeObserver(fitStage).observe(el.editor.parentElement);
  window.addEventListener('resize', fitStage);
}

wire();
setTool('brush');
setBrushSize(brushSize());
el.quality.disabled = el.format.value !== 'jpeg'; // the browser may restore a form's values on reload
el.qualityValue.textContent = el.quality.value;
updateComparison();
setState('empty');
checkHealth();
