// Building DOM without innerHTML: user and API text only ever becomes text nodes or attributes.

const SVG_NS = 'http://www.w3.org/2000/svg';

function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'text') el.textContent = String(value);
    else if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('p', {class: 'x'}, 'text', otherNode). */
export function h(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, same calling convention as h(). */
export function s(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replace el's children, skipping null/false (conditional parts of a view). */
export function fillWith(el, ...children) {
  el.replaceChildren(
    ...children
      .flat(Infinity)
      .filter((child) => child !== null && child !== undefined && child !== false)
      .map((child) => (child instanceof Node ? child : document.createTextNode(String(child)))),
  );
  return el;
}

/** A table from column headings and rows of cells (strings or nodes). */
export function table(headings, rows, attrs = {}) {
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      attrs,
      h('thead', {}, h('tr', {}, headings.map((text) => h('th', { scope: 'col' }, text)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((cell) => h('td', {}, cell))))),
    ),
  );
}

/** An alert paragraph (role=alert so screen readers announce it). */
export function alert(text, kind = 'error') {
  return h('p', { class: `alert ${kind}`, role: 'alert' }, text);
}

/** Announce a short message to assistive technology without moving focus. */
export function announce(text) {
  const status = document.getElementById('status');
  status.textContent = '';
  window.setTimeout(() => {
    status.textContent = text;
  }, 50);
}

/** Select the text of an input (or of any element) so that Ctrl+C copies it. */
function selectText(target) {
  if (!target) return;
  target.focus({ preventScroll: true });
  if (typeof target.select === 'function') {
    target.select();
    return;
  }
  const range = document.createRange();
  range.selectNodeContents(target);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

/**
 * A copy-to-clipboard button for getText(). Where the clipboard API is missing or refused (plain
 * http on a LAN address is not a secure context) it says so and selects `target` for Ctrl+C:
 * it never says "Copied" when nothing was copied.
 */
export function copyButton(getText, labels, target) {
  // labels.name: the accessible name, which says what is copied ("Copy curl"), since a page can
  // have several Copy buttons.
  const button = h('button', { type: 'button', class: 'secondary small', 'data-action': 'copy', 'aria-label': labels.name }, labels.copy);
  let hint = null;
  button.addEventListener('click', async () => {
    let copied = false;
    try {
      if (navigator.clipboard && typeof navigator.clipboard.writeText === 'function') {
        await navigator.clipboard.writeText(getText());
        copied = true;
      }
    } catch {
      copied = false;
    }
    if (copied) {
      hint?.remove();
      hint = null;
      button.textContent = labels.copied;
      announce(labels.copied);
      window.setTimeout(() => {
        button.textContent = labels.copy;
      }, 1500);
      return;
    }
    if (!hint) {
      hint = h('span', { class: 'copy-hint', role: 'alert', 'data-copy-failed': '' }, labels.manual);
      button.after(hint);
    }
    selectText(target);
  });
  return button;
}
