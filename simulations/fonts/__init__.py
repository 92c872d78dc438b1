"""Font image generation: (font, character) -> 32x32 glyph, composed with a frozen U-Net (docs/fonts.md)."""
