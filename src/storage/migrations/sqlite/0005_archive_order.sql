-- RFC 5005 archives page a feed's whole history in the order articles were first stored
-- (create_time, then guid): that order never changes, so a full page keeps its entries.
CREATE INDEX articles_section_created ON articles (section, create_time, guid);
CREATE INDEX articles_created ON articles (create_time, guid);
