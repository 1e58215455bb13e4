// A minimal in-memory Hocuspocus server for benchmarks: no extensions, no persistence.
import { Server } from '@hocuspocus/server'
const server = new Server({ port: Number(process.env.PORT || 1234), address: process.env.HOST || '127.0.0.1', quiet: true })
await server.listen()
console.log(`hocuspocus listening on ${process.env.HOST || '127.0.0.1'}:${server.address.port}`)
