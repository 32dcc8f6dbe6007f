// Moved to lib/ (the LoRA merge needs them): re-exported for the tests.
export * from '../../lib/util/float-bits.js'
