// Markdown to DOM nodes, for model cards: headings, paragraphs, lists, quotes, rules, fenced
// code, and inline code, emphasis and links. Every piece of the text becomes a text node; no
// HTML is parsed, so a readme holding `<script>` shows those characters. Links go only to
// http(s) and mailto addresses.

import { el } from "./lib.js?v={{lib.js}}";

const SAFE = new Set(["http:", "https:", "mailto:"]);

function safeHref(raw) {
  try {
    const u = new URL(raw, location.href);
    return SAFE.has(u.protocol) ? u.href : null;
  } catch {
    return null;
  }
}

const INLINE = /`([^`]+)`|\*\*(.+?)\*\*|__(.+?)__|\*([^*\s][^*]*?)\*|\b_([^_\s][^_]*?)_\b|\[([^\]]+)\]\(([^()\s]+)\)/g;

/** Inline markdown as nodes and strings (el() makes the strings text nodes). */
export function inline(text) {
  const out = [];
  let at = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > at) out.push(text.slice(at, m.index));
    if (m[1] !== undefined) out.push(el("code", {}, m[1]));
    else if (m[2] !== undefined || m[3] !== undefined) out.push(el("strong", {}, inline(m[2] ?? m[3])));
    else if (m[4] !== undefined || m[5] !== undefined) out.push(el("em", {}, inline(m[4] ?? m[5])));
    else {
      const href = safeHref(m[7]);
      out.push(href ? el("a", { href, rel: "noopener noreferrer nofollow" }, inline(m[6])) : m[0]);
    }
    at = m.index + m[0].length;
  }
  if (at < text.length) out.push(text.slice(at));
  return out;
}

const FENCE = /^\s{0,3}(```|~~~)\s*([\w+-]*)\s*$/;
const HEADING = /^\s{0,3}(#{1,6})\s+(.*?)(\s+#+)?\s*$/;
const RULE = /^\s{0,3}([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s{0,3}>/;
const ITEM = /^\s{0,3}([-*+]|\d{1,9}[.)])\s+(.*)$/;

/** Block markdown as an array of nodes; a `#` heading becomes an `h{level}`. */
export function markdown(source, level = 3) {
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  const para = [];
  const flush = () => {
    if (para.length) out.push(el("p", {}, inline(para.join(" "))));
    para.length = 0;
  };
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    let m;
    if (!line.trim()) {
      flush();
      i += 1;
    } else if ((m = FENCE.exec(line))) {
      flush();
      const body = [];
      for (i += 1; i < lines.length && !lines[i].trim().startsWith(m[1]); i += 1) body.push(lines[i]);
      i += 1;
      out.push(el("pre", {}, el("code", m[2] ? { "data-lang": m[2] } : {}, body.join("\n"))));
    } else if ((m = HEADING.exec(line))) {
      flush();
      out.push(el(`h${Math.min(6, level + m[1].length - 1)}`, {}, inline(m[2])));
      i += 1;
    } else if (RULE.test(line)) {
      flush();
      out.push(el("hr"));
      i += 1;
    } else if (QUOTE.test(line)) {
      flush();
      const body = [];
      for (; i < lines.length && QUOTE.test(lines[i]); i += 1) body.push(lines[i].replace(/^\s{0,3}>\s?/, ""));
      out.push(el("blockquote", {}, markdown(body.join("\n"), level)));
    } else if ((m = ITEM.exec(line))) {
      flush();
      const ordered = /\d/.test(m[1]);
      const items = [];
      while (i < lines.length) {
        const item = ITEM.exec(lines[i]);
        if (item && /\d/.test(item[1]) === ordered) items.push([item[2]]);
        else if (items.length && /^\s{2,}\S/.test(lines[i])) items[items.length - 1].push(lines[i].trim());
        else break;
        i += 1;
      }
      out.push(el(ordered ? "ol" : "ul", {}, items.map((t) => el("li", {}, inline(t.join(" "))))));
    } else {
      para.push(line.trim());
      i += 1;
    }
  }
  flush();
  return out;
}

/** A card's fields as a section's content: the readme rendered, the rest as a list. */
export function cardView(card) {
  const rows = [
    ["Intended use", card.intended_use],
    ["Limitations", card.limitations],
    ["Evaluation", card.evaluation],
  ].filter(([, v]) => v);
  const facts = [
    card.license ? el("span", { class: "chip" }, `license: ${card.license}`) : null,
    ...(card.owners || []).map((o) => el("span", { class: "chip" }, `owner: ${o}`)),
  ].filter(Boolean);
  return [
    facts.length ? el("p", {}, facts) : null,
    card.readme ? el("div", { class: "readme" }, markdown(card.readme)) : null,
    rows.length ? el("dl", { class: "card-notes" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, markdown(v, 4))])) : null,
  ].filter(Boolean);
}

export function cardIsEmpty(card) {
  return !card || !Object.keys(card).length;
}
