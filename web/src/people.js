// Colours of people: one stable colour per name, the same for a person's cursor, their entry in
// "Here now" and their changes in the History panel.
export const COLORS = ['#e11d48', '#ea580c', '#ca8a04', '#16a34a', '#0891b2', '#2563eb', '#7c3aed', '#c026d3']

/** The colour of `name`: FNV-1a of its UTF-16 code units, picking one of COLORS. */
export function colorFor (name) {
  let hash = 0x811c9dc5
  for (let i = 0; i < name.length; i++) {
    hash ^= name.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return COLORS[hash % COLORS.length]
}
