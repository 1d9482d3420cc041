// The review screen (templates/curation/review.html): verdicts, readability, tags and notes,
// the cold-start editor with a live word diff, debounced autosave under an optimistic lock,
// and keyboard shortcuts. No framework: the page is server-rendered, this adds behaviour.
(function () {
  "use strict";

  var root = document.getElementById("review");
  if (!root) return;

  var AUTOSAVE_MS = 1500;
  var DIFF_DELAY_MS = 120;
  // The word diff runs on every pause in typing: bound its work so a long rollout stays responsive.
  var MAX_EDIT_DISTANCE = 2000;   // tokens; beyond it the changed middle is shown whole
  var DIFF_WORK_BUDGET = 3e7;     // (tokens in the changed middle) x (edit distance)
  var SAME_CONTEXT_CHARS = 160;   // unchanged text kept on each side of a change

  function $(id) { return document.getElementById(id); }

  var saveUrl = root.dataset.saveUrl;
  var csrf = root.dataset.csrf;
  var canSave = root.dataset.canSave === "1";
  var fields = { reasoning: $("edited_reasoning"), summary: $("edited_summary"), tags: $("tags"), notes: $("notes") };
  var original = JSON.parse($("original-text").textContent);
  var UNCHANGED = "Not saved as an edit: the rewrite is the model's text unchanged. Change it, " +
    "or close the editor (Esc) and accept the rollout as it is (a).";
  var editor = $("editor");
  var statusLine = $("save-status");
  var conflictBox = $("conflict");
  var help = $("shortcuts");

  // The verdict is only ever what the person chose: opening the editor sets none, and an edit is recorded
  // only when a rewrite that differs from the model's text is saved (the server refuses an unchanged one).
  var state = {
    version: Number(root.dataset.version),
    verdict: root.dataset.verdict,
    savedVerdict: root.dataset.verdict,  // what the server holds; a refused save goes back to it
    server: JSON.parse($("saved-rewrite").textContent),  // the rewrite the server holds ("" when none)
    readability: root.dataset.readability ? Number(root.dataset.readability) : null,
    editorOpen: !editor.hidden,
    dirty: false,
    timer: null,
    inFlight: null,
    again: false,
    theirs: null,  // their saved state while a conflict is shown
  };

  // ---- status, verdict and readability display ------------------------------------------------

  function setStatus(text, kind) {
    statusLine.textContent = text;
    statusLine.className = "save-status" + (kind ? " " + kind : "");
  }

  function showVerdict() {
    $("verdict-shown").textContent = state.verdict;
    root.querySelectorAll("button[data-verdict]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.verdict === state.verdict));
    });
  }

  function showReadability() {
    root.querySelectorAll("input[name=readability]").forEach(function (input) {
      input.checked = Number(input.value) === state.readability;
    });
  }

  function showFinal(finalVerdict) {
    var shown = $("final-verdict");
    if (shown) shown.textContent = finalVerdict ? "final: " + finalVerdict : "";
  }

  // ---- saving ---------------------------------------------------------------------------------

  function rewriteChanged() {
    return fields.reasoning.value.trim() !== original.reasoning.trim() ||
      fields.summary.value.trim() !== original.summary.trim();
  }

  function body() {
    var data = new URLSearchParams();
    data.set("version", String(state.version));
    data.set("verdict", state.verdict);
    data.set("readability", state.readability === null ? "" : String(state.readability));
    data.set("tags", fields.tags.value);
    data.set("notes", fields.notes.value);
    if (state.verdict === "edit" || (state.editorOpen && rewriteChanged())) {
      // The edit itself, or a draft kept beside another verdict (the item stays to do while pending).
      data.set("edited_reasoning", fields.reasoning.value);
      data.set("edited_summary", fields.summary.value);
    } else if (state.server.reasoning || state.server.summary) {
      // No edit and no changed draft: drop the stored draft, so the untouched prefill is never kept as a rewrite.
      data.set("edited_reasoning", "");
      data.set("edited_summary", "");
    }
    return data;
  }

  function markDirty() {
    state.dirty = true;
    if (state.theirs) return;  // no autosave over a conflict: the user chooses first
    setStatus("Unsaved changes…", "pending");
    clearTimeout(state.timer);
    state.timer = setTimeout(save, AUTOSAVE_MS);
  }

  function save() {
    clearTimeout(state.timer);
    state.timer = null;
    if (!canSave) { setStatus("You may not annotate (viewer).", "error"); return Promise.resolve(false); }
    if (state.theirs) return Promise.resolve(false);
    if (state.inFlight) { state.again = true; return state.inFlight; }
    state.dirty = false;
    setStatus("Saving…", "pending");
    state.inFlight = fetch(saveUrl, {
      method: "POST", body: body(), credentials: "same-origin",
      headers: { "X-CSRFToken": csrf, "Accept": "application/json" },
    }).then(function (response) {
      return response.json().then(function (data) { return { status: response.status, data: data }; });
    }).then(function (result) {
      var data = result.data;
      if (result.status === 200) {
        state.version = data.version;
        root.dataset.version = String(data.version);
        state.savedVerdict = data.verdict;
        state.server = { reasoning: data.edited_reasoning, summary: data.edited_summary };
        var draft = data.verdict !== "edit" && (data.edited_reasoning || data.edited_summary);
        setStatus("Saved · version " + data.version +
          (draft ? " · a draft rewrite, not an edit until you save it (Ctrl+S)" : ""), "ok");
        showFinal(data.final_verdict);
        return true;
      }
      state.dirty = true;
      if (result.status === 409) { showConflict(data); return false; }
      state.verdict = state.savedVerdict;  // a refused verdict is not shown as if it were recorded
      showVerdict();
      setStatus(data.error || "Not saved (HTTP " + result.status + ")", "error");
      return false;
    }).catch(function () {
      state.dirty = true;
      setStatus("Not saved: the server could not be reached. Your text is kept here; save again with Ctrl+S.", "error");
      return false;
    }).finally(function () {
      state.inFlight = null;
      if (state.again) {
        state.again = false;
        if (state.dirty && !state.theirs) save();
      }
    });
    return state.inFlight;
  }

  // Save whatever is pending (waiting out a save in flight); resolves true when nothing is left unsaved.
  // A refused or failed save ends it with false (no retry loop); it goes on only while saves succeed.
  function flush() {
    if (state.inFlight) return state.inFlight.then(flush);
    if (!state.dirty) return Promise.resolve(!state.theirs);
    return save().then(function (ok) {
      if (!ok) return false;
      return state.inFlight || state.dirty ? flush() : true;
    });
  }

  // ---- conflicts: show theirs beside what the user typed, which is never thrown away -------------

  function showConflict(data) {
    state.theirs = data.theirs;
    $("conflict-message").textContent = data.conflict +
      " What you typed is still on this page: reload theirs, or keep yours and save it over theirs.";
    conflictBox.hidden = false;
    setStatus("Conflict: not saved", "error");
  }

  function reloadTheirs() {
    var theirs = state.theirs;
    state.theirs = null;
    conflictBox.hidden = true;
    state.version = theirs.version;
    state.verdict = state.savedVerdict = theirs.verdict;
    state.server = { reasoning: theirs.edited_reasoning, summary: theirs.edited_summary };
    state.readability = theirs.readability;
    fields.tags.value = theirs.tags;
    fields.notes.value = theirs.notes;
    if (theirs.verdict === "edit" || theirs.edited_reasoning || theirs.edited_summary) {
      fields.reasoning.value = theirs.edited_reasoning;
      fields.summary.value = theirs.edited_summary;
      openEditor(false);
    } else {  // theirs has no rewrite: back to the original, editor closed, as a fresh page would be
      fields.reasoning.value = original.reasoning;
      fields.summary.value = original.summary;
      closeEditor();
    }
    state.dirty = false;
    showVerdict();
    showReadability();
    updateDiff();
    setStatus("Loaded " + (theirs.saved_by || "their") + "'s version " + theirs.version, "ok");
  }

  function keepMine() {
    state.version = state.theirs.version;  // a deliberate second save, over the version now stored
    state.theirs = null;
    conflictBox.hidden = true;
    state.dirty = true;
    return save();
  }

  // ---- actions --------------------------------------------------------------------------------

  function setVerdict(verdict) {
    state.verdict = verdict;
    showVerdict();
    state.dirty = true;
    return save();
  }

  function openEditor(focus) {
    state.editorOpen = true;
    editor.hidden = false;
    updateDiff();
    if (focus) fields.reasoning.focus();
  }

  function closeEditor() {
    state.editorOpen = false;
    editor.hidden = true;
  }

  // e: open the editor; nothing is saved, the item stays to do.
  function edit() {
    openEditor(true);
    if (state.verdict !== "edit") {
      setStatus("Editing: nothing is recorded until you save a changed rewrite (Ctrl+S).", "pending");
    }
  }

  // Accept and reject are about the model's own text: a rewrite in the editor is dropped (after asking).
  function judge(verdict) {
    var asked = "Drop your rewrite and " + verdict + " the model's text as it is?";
    if (state.editorOpen && rewriteChanged() && !window.confirm(asked)) return Promise.resolve(false);
    if (state.editorOpen || state.verdict === "edit") {
      closeEditor();
      fields.reasoning.value = original.reasoning;
      fields.summary.value = original.summary;
    }
    return setVerdict(verdict);
  }

  // Ctrl+S and the save buttons: with the editor open, record the rewrite as an edit, unless it is unchanged.
  function saveNow() {
    if (!state.editorOpen) return save();
    if (!rewriteChanged()) {
      var rest = state.dirty ? save() : Promise.resolve(true);  // notes or tags typed meanwhile still save
      return rest.then(function () { setStatus(UNCHANGED, "error"); return false; });
    }
    return setVerdict("edit");
  }

  // Esc outside a field, or Cancel: close the editor. A saved edit stays as saved; a draft beside another
  // verdict is dropped, so the item is exactly as it was before the editor opened.
  function cancelEdit() {
    var keep = state.verdict === "edit" ? state.server : original;
    var losing = fields.reasoning.value !== keep.reasoning || fields.summary.value !== keep.summary;
    if (losing && !window.confirm("Drop the changes to your rewrite?")) return Promise.resolve(false);
    fields.reasoning.value = keep.reasoning;
    fields.summary.value = keep.summary;
    closeEditor();
    updateDiff();
    if (state.verdict !== "edit" && (state.server.reasoning || state.server.summary)) {
      state.dirty = true;
      return save();  // body() sends the empty rewrite: the draft goes
    }
    setStatus(state.verdict === "edit" ? "Editor closed: your saved edit stands."
      : "Editor closed: nothing was recorded.", "ok");
    return Promise.resolve(true);
  }

  function setReadability(value) {
    state.readability = value;
    showReadability();
    state.dirty = true;
    return save();
  }

  function go(url, direction) {
    if (!url) { setStatus("No " + direction + " item of yours in this queue.", "pending"); return; }
    flush().then(function (ok) {
      if (ok) window.location.href = url;
      else setStatus("Not leaving this item: it has an unsaved change (see above).", "error");
    });
  }

  function toggleHelp() {
    if (help.open) help.close(); else help.showModal();
  }

  function toggleTag(tag) {
    var tags = fields.tags.value.split(",").map(function (t) { return t.trim(); }).filter(Boolean);
    var at = tags.indexOf(tag);
    if (at === -1) tags.push(tag); else tags.splice(at, 1);
    fields.tags.value = tags.join(", ");
    markDirty();
  }

  // ---- live word diff -------------------------------------------------------------------------

  var TOKEN = /\s+|[\p{L}\p{N}_]+|[^\s\p{L}\p{N}_]/gu;
  var LINE = /[^\n]*\n|[^\n]+$/g;

  function tokens(text) { return text.match(TOKEN) || []; }
  function lines(text) { return text.match(LINE) || []; }

  // Myers' O((N+M)D) diff of two arrays of strings, giving up (null) past maxD edits.
  // Returns [op, item] pairs, op one of "same", "removed", "added".
  function myers(a, b, maxD) {
    var n = a.length, m = b.length, max = Math.min(n + m, maxD), off = max + 1;
    var v = new Int32Array(2 * max + 3), trace = [];
    for (var d = 0; d <= max; d++) {
      trace.push(v.slice(off - d, off + d + 1));  // the state before step d, diagonals -d..d
      for (var k = -d; k <= d; k += 2) {
        var x = (k === -d || (k !== d && v[off + k - 1] < v[off + k + 1])) ? v[off + k + 1] : v[off + k - 1] + 1;
        var y = x - k;
        while (x < n && y < m && a[x] === b[y]) { x++; y++; }
        v[off + k] = x;
        if (x >= n && y >= m) return backtrack(trace, a, b, d);
      }
    }
    return null;
  }

  function backtrack(trace, a, b, last) {
    var ops = [], x = a.length, y = b.length;
    for (var d = last; d > 0; d--) {
      var snap = trace[d], k = x - y;
      var down = k === -d || (k !== d && snap[k - 1 + d] < snap[k + 1 + d]);
      var prevK = down ? k + 1 : k - 1, prevX = snap[prevK + d], prevY = prevX - prevK;
      while (x > prevX && y > prevY) { ops.push(["same", a[x - 1]]); x--; y--; }
      if (x === prevX) ops.push(["added", b[y - 1]]); else ops.push(["removed", a[x - 1]]);
      x = prevX; y = prevY;
    }
    while (x > 0 && y > 0) { ops.push(["same", a[x - 1]]); x--; y--; }
    return ops.reverse();
  }

  // Pieces of text ({op, text}), adjacent pieces of one op merged.
  function Pieces() { this.list = []; this.coarse = false; }
  Pieces.prototype.add = function (op, text) {
    if (!text) return;
    var last = this.list[this.list.length - 1];
    if (last && last.op === op) last.text += text; else this.list.push({ op: op, text: text });
  };

  // Align two arrays with their common start and end cut off first (linear), then Myers on the
  // middle within a work budget; `changed(removedItems, addedItems)` gets each run of changes.
  function align(a, b, pieces, changed) {
    var start = 0;
    while (start < a.length && start < b.length && a[start] === b[start]) start++;
    var endA = a.length, endB = b.length;
    while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA--; endB--; }
    pieces.add("same", a.slice(0, start).join(""));
    var midA = a.slice(start, endA), midB = b.slice(start, endB);
    var budget = Math.floor(DIFF_WORK_BUDGET / (midA.length + midB.length + 1));
    var ops = midA.length && midB.length ? myers(midA, midB, Math.min(MAX_EDIT_DISTANCE, Math.max(budget, 50))) : [];
    if (ops === null) {  // too different to align within the budget: the changed middle, whole
      pieces.coarse = true;
      changed(midA, midB, true);
    } else if (!midA.length || !midB.length) {
      changed(midA, midB, false);
    } else {
      var removed = [], added = [];
      ops.forEach(function (op) {
        if (op[0] === "removed") { removed.push(op[1]); return; }
        if (op[0] === "added") { added.push(op[1]); return; }
        if (removed.length || added.length) { changed(removed, added, false); removed = []; added = []; }
        pieces.add("same", op[1]);
      });
      if (removed.length || added.length) changed(removed, added, false);
    }
    pieces.add("same", a.slice(endA).join(""));
  }

  // Word diff in two levels: lines first, then words inside each run of changed lines, so typing in
  // a long reasoning aligns only the few lines around the change.
  function wordDiff(oldText, newText) {
    var pieces = new Pieces();
    align(lines(oldText), lines(newText), pieces, function (removedLines, addedLines, coarse) {
      if (coarse) {
        pieces.add("removed", removedLines.join(""));
        pieces.add("added", addedLines.join(""));
        return;
      }
      wordAlign(removedLines.join(""), addedLines.join(""), pieces);
    });
    return { pieces: pieces.list, coarse: pieces.coarse };
  }

  var SPACE = /\s/;

  // A word start: after whitespace, before something else. TOKEN splits there whatever came before,
  // so cutting both texts at one keeps their tokens the same.
  function wordStart(text, at) { return SPACE.test(text[at - 1]) && !SPACE.test(text[at]); }

  // Words of one run of changed lines. The common start and end are cut off as characters first
  // (at word starts), so a change inside one very long line tokenizes only the part around it.
  function wordAlign(x, y, pieces) {
    var shorter = Math.min(x.length, y.length), head = 0, tail = 0;
    while (head < shorter && x.charCodeAt(head) === y.charCodeAt(head)) head++;
    var cut = head - 1;
    while (cut > 0 && !wordStart(x, cut)) cut--;
    cut = Math.max(cut, 0);
    while (tail < shorter - cut && x.charCodeAt(x.length - 1 - tail) === y.charCodeAt(y.length - 1 - tail)) tail++;
    var keep = tail - 1;  // the kept end starts at a word start whose preceding character is common too
    while (keep > 0 && !wordStart(x, x.length - keep)) keep--;
    keep = Math.max(keep, 0);
    pieces.add("same", x.slice(0, cut));
    align(tokens(x.slice(cut, x.length - keep)), tokens(y.slice(cut, y.length - keep)), pieces,
      function (removed, added) {
        pieces.add("removed", removed.join(""));
        pieces.add("added", added.join(""));
      });
    pieces.add("same", x.slice(x.length - keep));
  }

  function countWords(text) { return (text.match(/[\p{L}\p{N}_]+/gu) || []).length; }

  function renderDiff(target, title, diff) {
    var section = document.createElement("div");
    section.className = "diff-part";
    var heading = document.createElement("h4");
    heading.textContent = title;
    section.appendChild(heading);
    var note = document.createElement("span");
    note.className = "muted small";
    heading.appendChild(document.createTextNode(" "));
    heading.appendChild(note);
    var pre = document.createElement("pre");
    pre.className = "raw diff";
    var added = 0, removed = 0, changed = false;
    diff.pieces.forEach(function (piece, i) {
      if (piece.op === "same") {
        var text = piece.text, first = i === 0, lastPiece = i === diff.pieces.length - 1;
        // Long unchanged runs keep only the text next to a change.
        var keepBefore = first ? 0 : SAME_CONTEXT_CHARS, keepAfter = lastPiece ? 0 : SAME_CONTEXT_CHARS;
        if (text.length > keepBefore + keepAfter + 40) {
          text = text.slice(0, keepBefore) + " … " + text.slice(text.length - keepAfter);
        }
        pre.appendChild(document.createTextNode(text));
        return;
      }
      changed = true;
      var mark = document.createElement(piece.op === "added" ? "ins" : "del");
      mark.textContent = piece.text;
      pre.appendChild(mark);
      if (piece.op === "added") added += countWords(piece.text); else removed += countWords(piece.text);
    });
    if (!changed) note.textContent = "unchanged";
    section.appendChild(pre);
    target.appendChild(section);
    return { added: added, removed: removed, coarse: diff.coarse };
  }

  var diffTimer = null;

  function updateDiff() {
    clearTimeout(diffTimer);
    diffTimer = null;
    if (!state.editorOpen) return;
    var target = $("diff");
    target.textContent = "";
    var parts = [
      renderDiff(target, "Reasoning process", wordDiff(original.reasoning, fields.reasoning.value)),
      renderDiff(target, "Summary", wordDiff(original.summary, fields.summary.value)),
    ];
    var added = parts[0].added + parts[1].added, removed = parts[0].removed + parts[1].removed;
    var note = parts[0].coarse || parts[1].coarse ? " · too many changes to align word by word: the changed part is shown whole" : "";
    $("diff-stats").textContent = "+" + added + " words, −" + removed + " words" + note;
    $("preview").textContent = "<think>\n" + fields.reasoning.value + "\n</think>\n\n" + fields.summary.value;
  }

  function scheduleDiff() {
    clearTimeout(diffTimer);
    diffTimer = setTimeout(updateDiff, DIFF_DELAY_MS);
  }

  // ---- wiring ---------------------------------------------------------------------------------

  [fields.reasoning, fields.summary].forEach(function (field) {
    field.addEventListener("input", function () { scheduleDiff(); markDirty(); });
  });
  [fields.tags, fields.notes].forEach(function (field) { field.addEventListener("input", markDirty); });
  root.querySelectorAll("button[data-verdict]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (button.dataset.verdict === "edit") edit(); else judge(button.dataset.verdict);
    });
  });
  root.querySelectorAll("input[name=readability]").forEach(function (input) {
    input.addEventListener("change", function () { setReadability(Number(input.value)); });
  });
  root.querySelectorAll("button[data-tag]").forEach(function (button) {
    button.addEventListener("click", function () { toggleTag(button.dataset.tag); });
  });
  $("save-button").addEventListener("click", function () { saveNow(); });
  $("save-edit").addEventListener("click", function () { saveNow(); });
  $("cancel-edit").addEventListener("click", function () { cancelEdit(); });
  $("reload-theirs").addEventListener("click", reloadTheirs);
  $("keep-mine").addEventListener("click", keepMine);
  $("help-button").addEventListener("click", toggleHelp);
  [["previous-link", "previous"], ["next-link", "next"]].forEach(function (pair) {
    var link = $(pair[0]);
    if (link) link.addEventListener("click", function (event) { event.preventDefault(); go(link.href, pair[1]); });
  });

  function isTyping(target) {
    if (!target || !target.closest) return false;
    var field = target.closest("textarea, select, [contenteditable=true], input");
    if (!field) return false;
    return !(field.tagName === "INPUT" && /^(radio|checkbox|button|submit)$/.test(field.type));
  }

  document.addEventListener("keydown", function (event) {
    var modifier = event.ctrlKey || event.metaKey;
    if (modifier && (event.key === "s" || event.key === "S")) {  // saves from anywhere, fields included
      event.preventDefault();
      saveNow();
      return;
    }
    if (event.key === "Escape") {
      if (help.open) return;  // the dialog closes itself
      if (isTyping(event.target)) event.target.blur();
      else if (state.editorOpen && !state.theirs) cancelEdit();
      return;
    }
    if (modifier || event.altKey || isTyping(event.target) || help.open && event.key !== "?") return;
    var handled = true;
    switch (event.key) {
      case "j": go(root.dataset.nextUrl, "next"); break;
      case "k": go(root.dataset.previousUrl, "previous"); break;
      case "a": judge("accept"); break;
      case "r": judge("reject"); break;
      case "e": edit(); break;
      case "?": toggleHelp(); break;
      case "1": case "2": case "3": case "4": case "5": setReadability(Number(event.key)); break;
      default: handled = false;
    }
    if (handled) event.preventDefault();
  });

  // Leaving by other means than j/k (a link, closing the tab) with a change not yet saved: ask first.
  window.addEventListener("beforeunload", function (event) {
    if (state.dirty || state.inFlight) { event.preventDefault(); event.returnValue = ""; }
  });

  showVerdict();
  showReadability();
  updateDiff();
})();
