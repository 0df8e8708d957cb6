// Just enough Markdown for agents' answers, built as DOM nodes (never innerHTML, so a model
// cannot inject markup): paragraphs, headings, fenced code, bullet and numbered lists, quotes,
// and inline `code`, **bold**, *italic* and [links](url) to http(s) URLs. Anything else stays text.

export function renderMarkdown(text) {
  const root = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = line.match(/^\s*(```+|~~~+)\s*([\w+-]*)\s*$/);
    if (fence) {
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++;
      const pre = el("pre", "code");
      pre.append(el("code", null, body.join("\n")));
      if (fence[2]) pre.dataset.lang = fence[2];
      root.append(pre);
      continue;
    }
    if (!line.trim()) { i++; continue; }
    const heading = line.match(/^(#{1,4})\s+(.*)$/);
    if (heading) {
      root.append(inline(el(`h${Math.min(6, heading[1].length + 2)}`), heading[2]));
      i++;
      continue;
    }
    const bullet = /^\s*[-*+]\s+/;
    const numbered = /^\s*\d+[.)]\s+/;
    if (bullet.test(line) || numbered.test(line)) {
      const marker = bullet.test(line) ? bullet : numbered;
      const list = el(marker === bullet ? "ul" : "ol");
      while (i < lines.length && marker.test(lines[i])) list.append(inline(el("li"), lines[i++].replace(marker, "")));
      root.append(list);
      continue;
    }
    if (line.startsWith(">")) {
      const quote = [];
      while (i < lines.length && lines[i].startsWith(">")) quote.push(lines[i++].replace(/^>\s?/, ""));
      root.append(inline(el("blockquote"), quote.join("\n")));
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^\s*(```|~~~|#{1,4}\s|[-*+]\s|\d+[.)]\s|>)/.test(lines[i])) para.push(lines[i++]);
    if (!para.length) para.push(lines[i++]);
    root.append(inline(el("p"), para.join("\n")));
  }
  return root;
}

const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(\*[^*\n]+\*)|(\[[^\]\n]+\]\((https?:\/\/[^)\s]+)\))/g;

function inline(parent, text) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parent.append(text.slice(last, m.index));
    const [token] = m;
    if (m[1]) parent.append(el("code", null, token.slice(1, -1)));
    else if (m[2]) parent.append(el("strong", null, token.slice(2, -2)));
    else if (m[3]) parent.append(el("em", null, token.slice(1, -1)));
    else {
      const a = el("a", null, token.slice(1, token.indexOf("](")));
      a.href = m[5];
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      parent.append(a);
    }
    last = m.index + token.length;
  }
  if (last < text.length) parent.append(text.slice(last));
  return parent;
}

function el(tag, cls = null, text = null) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== null) node.textContent = text;
  return node;
}
