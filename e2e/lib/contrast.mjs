// A WCAG 2 contrast check run inside the page: every visible piece of text
// against the background it is drawn on.

/** Returns the text that falls short of AA (4.5:1, or 3:1 for large text). */
export function contrastFailures(page) {
  return page.evaluate(() => {
    const parse = (value) => {
      const parts = value.match(/[\d.]+/g)?.map(Number) ?? [0, 0, 0, 0];
      return { rgb: parts.slice(0, 3), alpha: parts.length > 3 ? parts[3] : 1 };
    };
    const luminance = ([r, g, b]) => {
      const channel = (v) => {
        const c = v / 255;
        return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
    };
    const ratio = (a, b) => {
      const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
      return (hi + 0.05) / (lo + 0.05);
    };
    const backgroundOf = (el) => {
      for (let node = el; node instanceof Element; node = node.parentElement) {
        const bg = parse(getComputedStyle(node).backgroundColor);
        if (bg.alpha > 0.5) return bg.rgb;
      }
      return parse(getComputedStyle(document.body).backgroundColor).rgb;
    };

    const failures = [];
    for (const el of document.querySelectorAll('body *')) {
      const hasText = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
      if (!hasText || !el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) continue;
      if (el.closest(':disabled, .sr-only')) continue;
      const style = getComputedStyle(el);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
      const value = ratio(parse(style.color).rgb, backgroundOf(el));
      if (value < (large ? 3 : 4.5)) {
        failures.push(`${el.tagName.toLowerCase()}.${el.className} "${el.textContent.trim().slice(0, 40)}": ${value.toFixed(2)}`);
      }
    }
    return failures;
  });
}
