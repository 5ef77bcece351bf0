"""Palettes, fonts and ttk styles for the Parley desktop client.

Everything visual is decided here: two palettes (``DARK`` is the default,
``LIGHT``), a font set chosen from what the system has, sizes in points so
that Tk scales them with the screen's DPI, and pixel metrics multiplied by the
same factor.  ``Theme.apply(root)`` configures every ttk style the widgets use
(on top of the ``clam`` theme, the one whose elements take colours everywhere)
plus the option database for the classic Tk widgets (Text, Canvas, Menu,
Listbox) so that no default-grey widget is left.
"""
from __future__ import annotations

import tkinter as tk
import tkinter.font as tkfont
from dataclasses import dataclass, field
from tkinter import ttk
from typing import Optional


@dataclass(frozen=True)
class Palette:
    name: str
    window: str          # behind everything (sidebar, status bar)
    sidebar: str
    surface: str         # the conversation
    field: str           # input box, entries
    field_focus: str
    border: str
    border_strong: str
    text: str
    text_dim: str
    text_faint: str
    accent: str
    accent_hover: str
    accent_pressed: str
    on_accent: str
    selection: str
    selection_text: str
    own_band: str
    mention_band: str
    mention_word: str
    url: str
    ok: str
    warn: str
    error: str
    button: str          # secondary buttons
    button_hover: str
    scroll_thumb: str
    scroll_thumb_hover: str
    names: tuple[str, ...] = field(default_factory=tuple)

    # colours derived from the ones above (sidebar rows, badges, the unread line)
    @property
    def row_hover(self) -> str:
        return mix(self.sidebar, self.text, 0.06)

    @property
    def row_selected(self) -> str:
        return mix(self.sidebar, self.accent, 0.24 if self.name == "dark" else 0.14)

    @property
    def badge(self) -> str:
        return mix(self.sidebar, self.text, 0.2 if self.name == "dark" else 0.14)

    @property
    def badge_text(self) -> str:
        return self.text

    @property
    def marker(self) -> str:
        return self.error

    @property
    def hit_term(self) -> str:
        return self.mention_band


DARK = Palette(
    name="dark",
    window="#16181d", sidebar="#1a1d23", surface="#1f2229",
    field="#272b34", field_focus="#2b303a", border="#2e333d", border_strong="#3b4150",
    text="#e4e7ee", text_dim="#949cad", text_faint="#646b7a",
    accent="#6d8dff", accent_hover="#86a1ff", accent_pressed="#5a78e6", on_accent="#ffffff",
    selection="#34477a", selection_text="#ffffff",
    own_band="#232838", mention_band="#3a3322", mention_word="#ffd166",
    url="#8ab4ff", ok="#43d18f", warn="#f2b84b", error="#ff6b7d",
    button="#2a2f39", button_hover="#343a46",
    scroll_thumb="#3a404c", scroll_thumb_hover="#4b5261",
    names=("#ff7b72", "#ffa657", "#e3c15b", "#a8d86e", "#56d392", "#3fd0c9",
           "#5cc8ff", "#82aaff", "#b392f0", "#e29bff", "#ff8bc6", "#f0a6a0"),
)

LIGHT = Palette(
    name="light",
    window="#eceef3", sidebar="#f3f4f7", surface="#ffffff",
    field="#f4f5f8", field_focus="#ffffff", border="#d8dce4", border_strong="#c3c9d4",
    text="#1b2030", text_dim="#5a6377", text_faint="#98a0b0",
    accent="#3b63f3", accent_hover="#3256dc", accent_pressed="#2a49c0", on_accent="#ffffff",
    selection="#c8d5ff", selection_text="#101626",
    own_band="#f2f5ff", mention_band="#fff5d6", mention_word="#8a5a00",
    url="#2457d6", ok="#1f9d61", warn="#b7791f", error="#d1364a",
    button="#e6e9ef", button_hover="#dde1e9",
    scroll_thumb="#cdd2db", scroll_thumb_hover="#b5bcc8",
    names=("#c4332b", "#b55200", "#806600", "#4f7a12", "#1a7f4b", "#0b7a77",
           "#0a6fb0", "#3355cc", "#6b45c8", "#9a36b0", "#c02a78", "#a0493d"),
)

PALETTES = {"dark": DARK, "light": LIGHT}

# first installed family wins
UI_FAMILIES = ("Inter", "Segoe UI", "SF Pro Text", ".AppleSystemUIFont", "Helvetica Neue",
               "Cantarell", "Ubuntu", "Noto Sans", "Open Sans", "DejaVu Sans",
               "Liberation Sans", "Arial", "Helvetica")
MONO_FAMILIES = ("JetBrains Mono", "Cascadia Mono", "Consolas", "SF Mono", "Menlo",
                 "Ubuntu Mono", "Noto Sans Mono", "DejaVu Sans Mono", "Liberation Mono",
                 "Courier New", "Courier")


def pick_family(root: tk.Misc, candidates: tuple[str, ...], fallback: str) -> str:
    have = {f.casefold(): f for f in tkfont.families(root)}
    for name in candidates:
        if name.casefold() in have:
            return have[name.casefold()]
    return fallback


def luminance(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    f = (lambda c: c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b)


def contrast(a: str, b: str) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def mix(a: str, b: str, t: float) -> str:
    """``a`` blended toward ``b`` by ``t`` (0..1)."""
    ca = [int(a[i:i + 2], 16) for i in (1, 3, 5)]
    cb = [int(b[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(ca, cb))


class Theme:
    """A palette applied to a Tk root: fonts, pixel metrics and ttk styles."""

    def __init__(self, root: tk.Misc, palette: Palette, font_size: float = 10.0):
        self.root = root
        self.palette = palette
        self.size = font_size
        # Tk sizes fonts in points (scaled by `tk scaling`); pixel paddings follow
        # the same factor so the layout keeps its proportions on high-DPI screens.
        self.scale = max(1.0, float(root.tk.call("tk", "scaling")) / (96 / 72))
        ui = pick_family(root, UI_FAMILIES, "TkDefaultFont")
        mono = pick_family(root, MONO_FAMILIES, "TkFixedFont")
        self.family, self.mono_family = ui, mono
        s = font_size
        self.fonts = {
            "body": self._font("ParleyBody", ui, s),
            "bold": self._font("ParleyBold", ui, s, weight="bold"),
            "italic": self._font("ParleyItalic", ui, s, slant="italic"),
            "bolditalic": self._font("ParleyBoldItalic", ui, s, weight="bold", slant="italic"),
            "small": self._font("ParleySmall", ui, s - 1.5),
            "smallbold": self._font("ParleySmallBold", ui, s - 1.5, weight="bold"),
            "time": self._font("ParleyTime", mono, s - 2),
            "title": self._font("ParleyTitle", ui, s + 5, weight="bold"),
            "heading": self._font("ParleyHeading", ui, s + 1.5, weight="bold"),
            "caps": self._font("ParleyCaps", ui, s - 2, weight="bold"),
            "avatar": self._font("ParleyAvatar", ui, s - 1, weight="bold"),
        }
        # the unread line: a text line this tall is a rule across the conversation
        try:
            self.rule_font = tkfont.nametofont("ParleyRule", root=root)
            self.rule_font.configure(family=ui, size=-max(1, self.px(2)))
        except tk.TclError:
            self.rule_font = tkfont.Font(root, name="ParleyRule", family=ui,
                                         size=-max(1, self.px(2)))
        for named in ("TkDefaultFont", "TkTextFont", "TkMenuFont", "TkHeadingFont",
                      "TkCaptionFont", "TkTooltipFont"):
            try:
                tkfont.nametofont(named, root=root).configure(family=ui, size=_pt(s))
            except tk.TclError:
                pass

    def _font(self, name: str, family: str, size: float, **kw) -> tkfont.Font:
        try:
            f = tkfont.nametofont(name, root=self.root)
            f.configure(family=family, size=_pt(size), **kw)
        except tk.TclError:
            f = tkfont.Font(self.root, name=name, family=family, size=_pt(size), **kw)
        return f

    def px(self, n: float) -> int:
        """Design pixels (at 96 dpi) -> screen pixels."""
        return max(1, round(n * self.scale))

    def name_colour(self, index: int) -> str:
        return self.palette.names[index % len(self.palette.names)]

    def avatar_text(self, index: int) -> str:
        bg = self.name_colour(index)
        return "#ffffff" if contrast("#ffffff", bg) >= contrast("#16181d", bg) else "#16181d"

    # ------------------------------------------------------------------------------
    def apply(self) -> None:
        c = self.palette
        root = self.root
        px = self.px
        style = ttk.Style(root)
        style.theme_use("clam")
        body = self.fonts["body"]

        style.configure(".", background=c.window, foreground=c.text, font=body,
                        bordercolor=c.border, darkcolor=c.window, lightcolor=c.window,
                        troughcolor=c.surface, focuscolor=c.accent, selectbackground=c.selection,
                        selectforeground=c.selection_text, fieldbackground=c.field,
                        insertcolor=c.text, arrowcolor=c.text_dim, borderwidth=0, relief="flat")
        style.map(".", foreground=[("disabled", c.text_faint)])

        # frames
        style.configure("TFrame", background=c.window)
        style.configure("App.TFrame", background=c.window)
        style.configure("Sidebar.TFrame", background=c.sidebar)
        style.configure("Chat.TFrame", background=c.surface)
        style.configure("Composer.TFrame", background=c.surface)
        style.configure("Status.TFrame", background=c.window)
        style.configure("Backdrop.TFrame", background=c.window)
        style.configure("Card.TFrame", background=c.sidebar, bordercolor=c.border,
                        relief="solid", borderwidth=1)
        style.configure("TSeparator", background=c.border)

        # labels
        style.configure("TLabel", background=c.window, foreground=c.text)
        for prefix, bg in (("Sidebar", c.sidebar), ("Card", c.sidebar), ("Status", c.window),
                           ("Chat", c.surface)):
            style.configure(f"{prefix}.TLabel", background=bg, foreground=c.text)
            style.configure(f"{prefix}Dim.TLabel", background=bg, foreground=c.text_dim,
                            font=self.fonts["small"])
        style.configure("Brand.TLabel", background=c.sidebar, foreground=c.text,
                        font=self.fonts["heading"])
        style.configure("Caps.TLabel", background=c.sidebar, foreground=c.text_dim,
                        font=self.fonts["caps"])
        style.configure("Panel.TFrame", background=c.sidebar)
        style.configure("Header.TFrame", background=c.surface)
        style.configure("Header.TLabel", background=c.surface, foreground=c.text)
        style.configure("HeaderTitle.TLabel", background=c.surface, foreground=c.text,
                        font=self.fonts["heading"])
        style.configure("HeaderGlyph.TLabel", background=c.surface, foreground=c.text_faint,
                        font=self.fonts["heading"])
        style.configure("Topic.TLabel", background=c.surface, foreground=c.text_dim,
                        font=self.fonts["small"])
        style.configure("TopicHint.TLabel", background=c.surface, foreground=c.text_faint,
                        font=self.fonts["small"])
        style.configure("PanelNote.TLabel", background=c.sidebar, foreground=c.text_dim,
                        font=self.fonts["small"])
        style.configure("Title.TLabel", background=c.sidebar, foreground=c.text,
                        font=self.fonts["title"])
        style.configure("Field.TLabel", background=c.sidebar, foreground=c.text_dim,
                        font=self.fonts["smallbold"])
        style.configure("CardError.TLabel", background=c.sidebar, foreground=c.error,
                        font=self.fonts["small"])
        style.configure("CardNote.TLabel", background=c.sidebar, foreground=c.text_dim,
                        font=self.fonts["small"])
        style.configure("Status.TLabel", background=c.window, foreground=c.text_dim,
                        font=self.fonts["small"], padding=(px(2), 0))
        for level, colour in (("ok", c.ok), ("warn", c.warn), ("error", c.error),
                              ("idle", c.text_faint)):
            style.configure(f"Dot{level}.TLabel", background=c.window, foreground=colour,
                            font=self.fonts["small"])
        style.configure("Placeholder.TLabel", background=c.field, foreground=c.text_faint)

        # buttons: flat, no bevel, hover and pressed states
        flat = dict(borderwidth=0, relief="flat", focusthickness=0, lightcolor=c.button,
                    darkcolor=c.button, bordercolor=c.button, padding=(px(14), px(7)))
        style.configure("TButton", background=c.button, foreground=c.text, **flat)
        style.map("TButton",
                  background=[("disabled", c.button), ("pressed", c.border_strong),
                              ("active", c.button_hover)],
                  lightcolor=[("pressed", c.border_strong), ("active", c.button_hover)],
                  darkcolor=[("pressed", c.border_strong), ("active", c.button_hover)],
                  bordercolor=[("focus", c.accent), ("active", c.button_hover)],
                  foreground=[("disabled", c.text_faint)])
        accent = dict(flat, lightcolor=c.accent, darkcolor=c.accent, bordercolor=c.accent)
        style.configure("Accent.TButton", background=c.accent, foreground=c.on_accent,
                        font=self.fonts["bold"], **accent)
        style.map("Accent.TButton",
                  background=[("disabled", mix(c.accent, c.surface, 0.55)),
                              ("pressed", c.accent_pressed), ("active", c.accent_hover)],
                  lightcolor=[("disabled", mix(c.accent, c.surface, 0.55)),
                              ("pressed", c.accent_pressed), ("active", c.accent_hover)],
                  darkcolor=[("disabled", mix(c.accent, c.surface, 0.55)),
                             ("pressed", c.accent_pressed), ("active", c.accent_hover)],
                  bordercolor=[("disabled", mix(c.accent, c.surface, 0.55)),
                               ("pressed", c.accent_pressed), ("active", c.accent_hover)],
                  foreground=[("disabled", mix(c.on_accent, c.surface, 0.35))])
        style.configure("Pill.TButton", background=c.accent, foreground=c.on_accent,
                        font=self.fonts["smallbold"], **dict(accent, padding=(px(12), px(4))))
        style.map("Pill.TButton", background=[("pressed", c.accent_pressed),
                                              ("active", c.accent_hover)],
                  lightcolor=[("active", c.accent_hover)], darkcolor=[("active", c.accent_hover)],
                  bordercolor=[("active", c.accent_hover)])

        style.configure("Link.TButton", background=c.window, foreground=c.text_dim,
                        font=self.fonts["small"], borderwidth=0, relief="flat", focusthickness=0,
                        lightcolor=c.window, darkcolor=c.window, bordercolor=c.window,
                        padding=(px(6), px(1)))
        style.map("Link.TButton", foreground=[("active", c.text)],
                  background=[("pressed", c.button), ("active", c.button)],
                  lightcolor=[("active", c.button)], darkcolor=[("active", c.button)],
                  bordercolor=[("active", c.button)])

        style.configure("Small.TButton", background=c.button, foreground=c.text,
                        font=self.fonts["small"], **dict(flat, padding=(px(10), px(3))))
        style.map("Small.TButton",
                  background=[("pressed", c.border_strong), ("active", c.button_hover)],
                  lightcolor=[("active", c.button_hover)], darkcolor=[("active", c.button_hover)],
                  bordercolor=[("active", c.button_hover)])
        for name, bg in (("Icon.TButton", c.surface), ("IconPanel.TButton", c.sidebar)):
            style.configure(name, background=bg, foreground=c.text_dim, font=self.fonts["heading"],
                            borderwidth=0, relief="flat", focusthickness=0, lightcolor=bg,
                            darkcolor=bg, bordercolor=bg, padding=(px(6), 0))
            style.map(name, foreground=[("active", c.text)],
                      background=[("pressed", c.button), ("active", c.row_hover)],
                      lightcolor=[("active", c.row_hover)], darkcolor=[("active", c.row_hover)],
                      bordercolor=[("active", c.row_hover)])

        # entries (the connect card)
        style.configure("TEntry", fieldbackground=c.field, foreground=c.text,
                        bordercolor=c.border, lightcolor=c.field, darkcolor=c.field,
                        insertcolor=c.text, padding=(px(8), px(6)), borderwidth=1,
                        selectbackground=c.selection, selectforeground=c.selection_text)
        style.map("TEntry",
                  bordercolor=[("focus", c.accent), ("hover", c.border_strong)],
                  lightcolor=[("focus", c.field_focus)],
                  fieldbackground=[("focus", c.field_focus), ("disabled", c.window)],
                  foreground=[("disabled", c.text_faint)])

        style.configure("Search.TEntry", fieldbackground=c.field, foreground=c.text,
                        bordercolor=c.border, lightcolor=c.field, darkcolor=c.field,
                        insertcolor=c.text, padding=(px(8), px(3)), borderwidth=1,
                        selectbackground=c.selection, selectforeground=c.selection_text)
        style.map("Search.TEntry",
                  bordercolor=[("focus", c.accent), ("hover", c.border_strong)],
                  lightcolor=[("focus", c.field_focus)],
                  fieldbackground=[("focus", c.field_focus)])

        # slim scrollbars without arrows
        for orient in ("Vertical", "Horizontal"):
            style.layout(f"Slim.{orient}.TScrollbar", [
                (f"{orient}.Scrollbar.trough", {"sticky": "nswe", "children": [
                    (f"{orient}.Scrollbar.thumb", {"expand": "1", "sticky": "nswe"})]})])
            style.configure(f"Slim.{orient}.TScrollbar", troughcolor=c.surface,
                            background=c.scroll_thumb, bordercolor=c.surface,
                            lightcolor=c.scroll_thumb, darkcolor=c.scroll_thumb,
                            arrowsize=px(10), gripcount=0, borderwidth=0, relief="flat")
            style.map(f"Slim.{orient}.TScrollbar",
                      background=[("pressed", c.scroll_thumb_hover),
                                  ("active", c.scroll_thumb_hover)],
                      lightcolor=[("active", c.scroll_thumb_hover)],
                      darkcolor=[("active", c.scroll_thumb_hover)])
            style.layout(f"Idle.{orient}.TScrollbar", style.layout(f"Slim.{orient}.TScrollbar"))
            style.configure(f"Idle.{orient}.TScrollbar", troughcolor=c.surface,
                            background=c.surface, bordercolor=c.surface, lightcolor=c.surface,
                            darkcolor=c.surface, arrowsize=px(10), gripcount=0)
            style.map(f"Idle.{orient}.TScrollbar", background=[], lightcolor=[], darkcolor=[])
            style.configure(f"SlimSidebar.{orient}.TScrollbar", troughcolor=c.sidebar,
                            background=c.scroll_thumb, bordercolor=c.sidebar,
                            lightcolor=c.scroll_thumb, darkcolor=c.scroll_thumb,
                            arrowsize=px(8), gripcount=0)
            style.layout(f"SlimSidebar.{orient}.TScrollbar",
                         style.layout(f"Slim.{orient}.TScrollbar"))
        # classic Tk widgets get the palette through the option database
        root.configure(background=c.window)
        opts = {
            "*Text.background": c.surface, "*Text.foreground": c.text,
            "*Text.insertBackground": c.text, "*Text.selectBackground": c.selection,
            "*Text.selectForeground": c.selection_text, "*Text.inactiveSelectBackground": c.selection,
            "*Text.highlightThickness": 0, "*Text.borderWidth": 0, "*Text.relief": "flat",
            "*Listbox.background": c.sidebar, "*Listbox.foreground": c.text,
            "*Listbox.selectBackground": c.selection, "*Listbox.highlightThickness": 0,
            "*Listbox.borderWidth": 0,
            "*Canvas.background": c.sidebar, "*Canvas.highlightThickness": 0,
            "*Canvas.borderWidth": 0,
            "*Menu.background": c.field, "*Menu.foreground": c.text,
            "*Menu.activeBackground": c.accent, "*Menu.activeForeground": c.on_accent,
            "*Menu.borderWidth": 1, "*Menu.activeBorderWidth": 0, "*Menu.relief": "solid",
            "*Menu.tearOff": 0, "*Menu.font": self.fonts["body"],
            "*Entry.background": c.field, "*Entry.foreground": c.text,
            "*Frame.background": c.window, "*Toplevel.background": c.window,
        }
        for key, value in opts.items():
            root.option_add(key, value, "interactive")


def _pt(size: float) -> int:
    """Tk font sizes are whole points (positive = points, scaled by DPI)."""
    return max(6, round(size))


def build(root: tk.Misc, name: str = "dark", font_size: Optional[float] = None) -> Theme:
    theme = Theme(root, PALETTES.get(name, DARK), font_size or 10.0)
    theme.apply()
    return theme
