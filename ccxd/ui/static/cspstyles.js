// xterm.js sizes its rows and colours with <style> elements it writes itself, which the
// page's CSP (style-src 'self', no 'unsafe-inline') blocks.  Their text is copied into
// constructed stylesheets instead, which CSP does not govern, so the policy stays strict.

const sheets = new WeakMap();

function mirror(el) {
  let sheet = sheets.get(el);
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheets.set(el, sheet);
    document.adoptedStyleSheets = [...document.adoptedStyleSheets, sheet];
  }
  sheet.replaceSync(el.textContent || "");
}

function drop(el) {
  const sheet = sheets.get(el);
  if (sheet) document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => s !== sheet);
}

/** Mirror every <style> element below ``root`` (now and later) into an adopted stylesheet. */
export function adoptInlineStyles(root) {
  root.querySelectorAll("style").forEach(mirror);
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === "characterData" || (r.type === "childList" && r.target.nodeName === "STYLE")) {
        const el = r.target.nodeName === "STYLE" ? r.target : r.target.parentElement;
        if (el && el.nodeName === "STYLE") mirror(el);
      }
      for (const n of r.addedNodes) {
        if (n.nodeName === "STYLE") mirror(n);
        else if (n.querySelectorAll) n.querySelectorAll("style").forEach(mirror);
      }
      for (const n of r.removedNodes) if (n.nodeName === "STYLE") drop(n);
    }
  }).observe(root, { subtree: true, childList: true, characterData: true });
}
