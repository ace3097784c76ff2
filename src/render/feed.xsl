<?xml version="1.0" encoding="utf-8"?>
<!-- Shows feedpub's RSS and Atom feeds as a readable page when opened in a browser.
     Feed readers ignore it. Text is copied as text: nothing from a feed is interpreted
     as markup except the RSS description, which feedpub always writes as escaped text. -->
<xsl:stylesheet version="1.0"
    xmlns:xsl="http://www.w3.org/1999/XSL/Transform"
    xmlns:atom="http://www.w3.org/2005/Atom"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    exclude-result-prefixes="atom dc">
  <xsl:output method="html" encoding="utf-8" doctype-system="about:legacy-compat"/>

  <xsl:template match="/">
    <xsl:variable name="title" select="rss/channel/title | atom:feed/atom:title"/>
    <html>
      <xsl:attribute name="lang">
        <xsl:value-of select="rss/channel/language | atom:feed/@xml:lang"/>
      </xsl:attribute>
      <head>
        <meta charset="utf-8"/>
        <meta name="viewport" content="width=device-width, initial-scale=1"/>
        <title><xsl:value-of select="$title"/></title>
        <style>
          body { font-family: system-ui, "Noto Sans CJK SC", "PingFang SC", sans-serif;
                 max-width: 48rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.7; color: #222; }
          .about { background: #f3f6fa; border-radius: .5rem; padding: .75rem 1rem; font-size: .9rem; }
          article { border-bottom: 1px solid #e5e5e5; padding: 1rem 0; }
          h2 { font-size: 1.2rem; margin: 0 0 .25rem; }
          .meta { color: #666; font-size: .85rem; margin: 0 0 .5rem; }
          .kicker { color: #b22; font-size: .85rem; margin: 0; }
        </style>
      </head>
      <body>
        <p class="about">这是一个订阅源（feed）：把本页网址复制到新闻阅读器中即可订阅。
          This is a news feed: copy this page's address into a feed reader to subscribe.</p>
        <h1><xsl:value-of select="$title"/></h1>
        <p><xsl:value-of select="rss/channel/description | atom:feed/atom:subtitle"/></p>
        <main>
          <xsl:apply-templates select="rss/channel/item | atom:feed/atom:entry"/>
        </main>
      </body>
    </html>
  </xsl:template>

  <xsl:template match="item">
    <article>
      <xsl:if test="category">
        <p class="kicker"><xsl:value-of select="category[1]"/></p>
      </xsl:if>
      <h2>
        <xsl:choose>
          <xsl:when test="link"><a href="{link}"><xsl:value-of select="title"/></a></xsl:when>
          <xsl:otherwise><xsl:value-of select="title"/></xsl:otherwise>
        </xsl:choose>
      </h2>
      <p class="meta">
        <xsl:value-of select="pubDate"/>
        <xsl:for-each select="dc:creator"> · <xsl:value-of select="."/></xsl:for-each>
      </p>
      <p><xsl:value-of select="description" disable-output-escaping="yes"/></p>
    </article>
  </xsl:template>

  <xsl:template match="atom:entry">
    <article>
      <xsl:if test="atom:category">
        <p class="kicker"><xsl:value-of select="atom:category[1]/@term"/></p>
      </xsl:if>
      <h2>
        <xsl:choose>
          <xsl:when test="atom:link[@rel='alternate']">
            <a href="{atom:link[@rel='alternate']/@href}"><xsl:value-of select="atom:title"/></a>
          </xsl:when>
          <xsl:otherwise><xsl:value-of select="atom:title"/></xsl:otherwise>
        </xsl:choose>
      </h2>
      <p class="meta">
        <xsl:value-of select="atom:published"/>
        <xsl:for-each select="atom:author"> · <xsl:value-of select="atom:name"/></xsl:for-each>
      </p>
      <p><xsl:value-of select="atom:summary"/></p>
    </article>
  </xsl:template>
</xsl:stylesheet>
