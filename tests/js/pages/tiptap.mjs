// A Tiptap editor over @hocuspocus/provider, bundled by tiptap.test.mjs for Chromium. The page's
// query string names the server (`ws`) and the document (`doc`); the editor and provider are on
// `window.tiptap` for the test.
import { Editor } from '@tiptap/core'
import StarterKit from '@tiptap/starter-kit'
import Collaboration from '@tiptap/extension-collaboration'
import { HocuspocusProvider } from '@hocuspocus/provider'

const params = new URLSearchParams(location.search)
const provider = new HocuspocusProvider({
  url: params.get('ws'),
  name: params.get('doc'),
  token: params.get('token') ?? ''
})
const editor = new Editor({
  element: document.querySelector('#editor'),
  extensions: [
    StarterKit.configure({ undoRedo: false }),
    Collaboration.configure({ document: provider.document })
  ]
})
window.tiptap = { editor, provider }
