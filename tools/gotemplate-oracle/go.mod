module sip/tools/gotemplate-oracle

go 1.22
