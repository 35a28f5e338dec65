// Applies a remembered theme before the first paint. This is a classic,
// render-blocking script on purpose: as a module it would run too late and
// the page would flash in the other theme.
try {
  const theme = localStorage.getItem('confab.theme');
  if (theme === 'dark' || theme === 'light') document.documentElement.dataset.theme = theme;
} catch {
  // Storage unavailable: follow the system theme.
}
